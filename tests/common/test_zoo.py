"""Shipped checkpoints: the default model compresses, and decoding finds it from the file header."""

import numpy as np
import pytest

from common import zoo
from common.checkpoint import load_model
from common.codec import compress_image, decompress_bytes
from common.errors import CheckpointError
from tests.conftest import random_image


def test_shipped_checkpoints_are_found_by_quality_and_identity(rng):
    models = zoo.shipped("beta_vae_gan")
    assert len(models) >= 3
    path = zoo.default_checkpoint("beta_vae_gan", quality=1)
    model = load_model(path)
    image = random_image(rng, 64, 96)
    data = compress_image(model, image)
    assert zoo.find_by_id(model.identity()) == path
    out = decompress_bytes(data)  # no model given: looked up from the header
    assert np.array_equal(out, decompress_bytes(data, model))
    assert zoo.default_checkpoint("beta_vae_gan") == models[len(models) // 2][0]


def test_bad_quality_is_a_clear_error():
    with pytest.raises(CheckpointError, match="--quality must be between"):
        zoo.default_checkpoint("beta_vae_gan", quality=99)
