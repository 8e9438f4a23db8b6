"""The model contract, checked for every family that imports: common code never branches on the family."""

import dataclasses

import pytest
import torch

from common.bitstream import Compressed
from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from common.contract import CompressionModel, ModelOutput
from common.datasets import to_tensor
from common.registry import FAMILIES
from tests.conftest import random_image
from tests.robustness.harness import available_families, tiny_model


def test_every_registered_family_is_implemented():
    assert available_families() == list(FAMILIES)


@pytest.fixture(scope="module", params=available_families())
def model(request):
    return tiny_model(request.param)


def test_config_is_a_dataclass_and_family_matches_the_registry(model):
    assert isinstance(model, CompressionModel) and dataclasses.is_dataclass(model.config)
    assert isinstance(model.config, model.Config) and model.family in FAMILIES
    assert model.pad_multiple >= 1 and model.ready_to_code()


def test_training_forward_gives_reconstruction_and_likelihoods(model):
    x = torch.rand(2, 3, 2 * model.pad_multiple, model.pad_multiple)
    model.train()
    try:
        out = model(x)
    finally:
        model.eval()
    assert isinstance(out, ModelOutput) and out.x_hat.shape == x.shape
    assert out.likelihoods and all(((v > 0) & (v <= 1)).all() for v in out.likelihoods.values())
    assert set(model.rate_weights()) <= set(out.likelihoods)
    rate = sum(-torch.log2(v).sum() for v in out.likelihoods.values())
    rate.backward()  # the rate is differentiable
    disc = model.build_discriminator().eval()
    logits = disc(out.x_hat.detach(), None if out.cond is None else out.cond.detach())
    assert logits.shape[0] == 2 and torch.isfinite(logits).all()
    features = disc.features(out.x_hat.detach(), None if out.cond is None else out.cond.detach())
    assert torch.equal(features[-1], logits) and len(features) > 1


def test_compress_gives_streams_and_decompress_the_image(model, rng):
    image = random_image(rng, 37, 53)
    x = to_tensor(image)
    compressed = model.compress(x)
    assert isinstance(compressed, Compressed) and compressed.size == (37, 53)
    assert all(isinstance(s, bytes) for s in compressed.streams)
    assert model.decompress(compressed).shape == (1, 3, 37, 53)


def test_exported_checkpoint_reloads_with_the_same_identity_and_files(model, rng, tmp_path):
    path = tmp_path / "m.pth"
    export_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.identity() == model.identity()
    image = random_image(rng, 48, 40)
    data = compress_image(model, image)
    assert compress_image(loaded, image) == data
    assert (decompress_bytes(data, loaded) == decompress_bytes(data, model)).all()


def test_views_say_what_they_changed_so_caches_tell_rate_points_apart(tiny_beta_path):
    """Every rate point of one checkpoint has the same identity; its view settings differ."""
    from common.checkpoint import load_model

    model = load_model(tiny_beta_path)
    assert model.view_settings() == {}
    a, b = model.view(quality=1.0), model.view(quality=2.0).view(extra=3)
    assert a.identity() == b.identity() == model.identity()
    assert a.view_settings() == {"quality": 1.0} and b.view_settings() == {"quality": 2.0, "extra": 3}
    assert model.view_settings() == {}
