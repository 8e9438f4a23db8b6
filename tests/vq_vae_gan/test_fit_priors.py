"""fit_priors.py: counted priors code held-out indices better than uniform, and old layouts upgrade."""

import math
import os
import subprocess
import sys

import pytest
import torch

from common.checkpoint import export_model, load_model, read_checkpoint
from common.codec import compress_image, decompress_bytes
from common.errors import CheckpointError
from tests.conftest import ROOT, make_image_splits, random_image
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

TINY = {"num_embeddings": 16, "embedding_dim": 8, "channels": 8, "disc_channels": 4, "downsample": 4}


def run(args):
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_image_splits(root / "bsds500", {"train": 4, "val": 2}, (48, 64))
    return root


def tiny_checkpoint(path, **kw):
    torch.manual_seed(0)
    model = VQVAEGAN(VQVAEGANConfig(**(TINY | kw))).train()
    for _ in range(3):
        model(torch.rand(2, 3, 32, 32))  # codebooks re-seeded from data
        model.apply_batch_statistics()
    export_model(model.eval(), path)
    return path


def test_fit_priors_saves_bits_and_writes_a_working_checkpoint(data_dir, tmp_path, rng):
    src = tiny_checkpoint(tmp_path / "vq.pth")
    out = tmp_path / "fitted.pth"
    r = run(
        [
            "vq_vae_gan/fit_priors.py",
            "--model_path",
            str(src),
            "--output",
            str(out),
            "--data_dir",
            str(data_dir),
        ]
    )
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("held-out bits per index"))
    bits = [float(b) for b in line.split(":")[1].split(",")]
    assert len(bits) == 2 and all(b < math.log2(16) for b in bits)
    model = load_model(out)
    image = random_image(rng, 40, 24)
    decoded = decompress_bytes(compress_image(model, image), model)
    before = load_model(src)
    assert (
        decoded == decompress_bytes(compress_image(before, image), before)
    ).all()  # same indices, same image
    assert read_checkpoint(out)["priors"]["sets"] == ["bsds500/train", "bsds500/val"]


def test_a_checkpoint_with_the_old_prior_layout_is_refused_then_upgraded(data_dir, tmp_path):
    old = tiny_checkpoint(tmp_path / "old.pth", stage0_context="none")
    ckpt = read_checkpoint(old)
    del ckpt["config"]["stage0_context"]  # written before the field existed: the default is "left"
    del ckpt["model_id"]
    torch.save(ckpt, old)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(old)
    out = tmp_path / "upgraded.pth"
    r = run(
        [
            "vq_vae_gan/fit_priors.py",
            "--model_path",
            str(old),
            "--output",
            str(out),
            "--data_dir",
            str(data_dir),
        ]
    )
    assert r.returncode == 0, r.stderr
    assert load_model(out).config.stage0_context == "left"


def test_fit_priors_refuses_another_family(tiny_beta_path, tmp_path):
    r = run(
        ["vq_vae_gan/fit_priors.py", "--model_path", str(tiny_beta_path), "--output", str(tmp_path / "x.pth")]
    )
    assert r.returncode == 2 and "beta_vae_gan" in r.stderr and "Traceback" not in r.stderr
