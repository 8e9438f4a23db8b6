"""Shipped checkpoints: the default model compresses, and decoding finds it from the file header."""

import numpy as np
import pytest
import torch

from common import zoo
from common.checkpoint import load_model
from common.codec import compress_image, decompress_bytes
from common.errors import CheckpointError
from tests.conftest import random_image


def test_shipped_checkpoints_are_found_by_quality_and_identity(rng):
    models = zoo.shipped("beta_vae_gan")
    assert models
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


def test_every_shipped_rate_is_reachable_by_quality(rng, tmp_path):
    """VQ ships three rates in one checkpoint (residual stages): --quality 1..3 reaches each."""
    import subprocess
    import sys

    from PIL import Image

    from tests.conftest import ROOT

    if not zoo.shipped("vq_vae_gan"):
        pytest.skip("no shipped VQ checkpoint")
    k = load_model(zoo.shipped("vq_vae_gan")[0][0]).config.num_quantizers
    image = random_image(rng, 64, 96)
    sizes = []
    for q in range(1, k + 1):
        view = zoo.shipped_model("vq_vae_gan", q)
        assert view.coded_layers() == q
        data = compress_image(view, image)
        assert np.array_equal(decompress_bytes(data), decompress_bytes(data, view))  # found from the header
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == k  # each stage adds bits
    with pytest.raises(CheckpointError, match=f"between 1 and {k} for vq_vae_gan"):
        zoo.shipped_model("vq_vae_gan", k + 1)
    betas = zoo.shipped("beta_vae_gan")
    assert zoo.shipped_model("beta_vae_gan", 1).checkpoint_path == str(betas[0][0])
    Image.fromarray(image).save(tmp_path / "in.png")
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "codec.py"),
            "compress",
            tmp_path / "in.png",
            tmp_path / "a.vgan",
        ]
        + ["--family", "vq_vae_gan", "--quality", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.vgan").stat().st_size == sizes[0]


def test_a_file_from_a_retired_checkpoint_names_the_release_that_decodes_it(tmp_path, monkeypatch, rng):
    import json

    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
    from common.errors import ModelMismatchError
    from tests.conftest import TINY_BETA

    old = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).eval()
    old.update()
    folder = tmp_path / "beta_vae_gan" / "pretrained"
    folder.mkdir(parents=True)
    record = {"model_id": old.identity().hex(), "file": "beta_vae_gan/pretrained/x.pth"}
    record |= {"last_commit": "abc1234", "retired": "2026-12-06", "why": "replaced"}
    (folder / "retired.json").write_text(json.dumps([record]))
    monkeypatch.setattr(zoo, "ROOT", tmp_path)
    assert zoo.retired(old.identity()) == record
    data = compress_image(old, random_image(rng, 64, 64))
    with pytest.raises(
        ModelMismatchError, match=r"x.pth as shipped up to commit abc1234 .*git show abc1234:"
    ):
        decompress_bytes(data)
    # a checkpoint whose architecture changed after it was retired needs that release's code too
    (folder / "retired.json").write_text(json.dumps([record | {"code_changed": True}]))
    with pytest.raises(ModelMismatchError, match=r"git worktree add \.\./release-abc1234 abc1234"):
        decompress_bytes(data)


def test_a_retired_checkpoint_this_code_cannot_load_names_the_release_that_can(tmp_path, monkeypatch):
    import json

    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
    from common.checkpoint import export_model
    from tests.conftest import TINY_BETA

    old = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).eval()
    path = tmp_path / "old.pth"
    export_model(old, path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["h_s.0.weight"]  # as if the architecture had changed since
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):  # not retired: the usual message
        load_model(path)
    folder = tmp_path / "beta_vae_gan" / "pretrained"
    folder.mkdir(parents=True)
    record = {"model_id": old.identity().hex(), "file": "beta_vae_gan/pretrained/x.pth", "code_changed": True}
    record |= {"last_commit": "abc1234", "retired": "2026-12-06", "why": "replaced"}
    (folder / "retired.json").write_text(json.dumps([record]))
    monkeypatch.setattr(zoo, "ROOT", tmp_path)
    with pytest.raises(
        CheckpointError, match=r"retired 2026-12-06 .*git worktree add \.\./release-abc1234 abc1234"
    ):
        load_model(path)


def test_retired_records_are_well_formed_and_not_shipped():
    import json

    for family in ("beta_vae_gan", "vq_vae_gan", "hierarchical_vae_gan"):
        path = zoo.ROOT / family / "pretrained" / "retired.json"
        if not path.is_file():
            continue
        shipped_ids = {mid.hex() for _, mid in zoo.shipped(family) + zoo.companions(family)}
        for record in json.loads(path.read_text()):
            assert {"model_id", "file", "last_commit", "retired", "why"} <= set(record)
            assert record["model_id"] not in shipped_ids


def test_the_default_family_offers_at_least_eight_rates(rng):
    """The β family's shipped rates, over every checkpoint and view: the comparison's curve points;
    a variable-rate checkpoint also takes any quality in between, written into the file."""
    models = [load_model(path) for path, _ in zoo.shipped("beta_vae_gan")]
    points = [view for m in models for view, _ in m.rate_points()]
    if len(models) == 1 and models[0].quality_range() is not None:
        assert len(points) >= 8
        image = random_image(rng, 64, 96)
        lo, hi = models[0].quality_range()
        sizes = [
            len(compress_image(zoo.shipped_model("beta_vae_gan", q), image)) for q in (lo, (lo + hi) / 2, hi)
        ]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
        data = compress_image(zoo.shipped_model("beta_vae_gan", 2.345), image)
        assert np.array_equal(
            decompress_bytes(data), decompress_bytes(data, models[0])
        )  # found from the header
    else:
        assert len(points) >= 5
