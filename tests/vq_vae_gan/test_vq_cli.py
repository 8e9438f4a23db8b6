"""The README's VQ-VAE-GAN command lines: main.py and evaluate.py, from the repo root and the folder."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from common.checkpoint import export_model
from tests.conftest import ROOT
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

ENV = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
TINY_FLAGS = ["--channels", "8", "--disc_channels", "4", "--embedding_dim", "8", "--num_embeddings", "16"]


def run(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_vq_path(tmp_path_factory):
    torch.manual_seed(0)
    model = VQVAEGAN(VQVAEGANConfig(num_embeddings=16, embedding_dim=8, channels=8, disc_channels=4)).train()
    for _ in range(2):
        model(torch.rand(2, 3, 64, 64))  # re-seeds the codebooks from data
        model.apply_batch_statistics()
    path = tmp_path_factory.mktemp("ckpt") / "tiny_vq.pth"
    export_model(model.eval(), path)
    return path


@pytest.mark.parametrize("cwd, script", [(ROOT, "vq_vae_gan/main.py"), (ROOT / "vq_vae_gan", "main.py")])
def test_main_runs_from_root_and_from_its_folder(cwd, script, shared_data, tmp_path):
    r = run(
        [
            script,
            "--output_dir",
            str(tmp_path),
            "--data_dir",
            str(shared_data),
            "--num_embeddings",
            "16",
            "--embedding_dim",
            "8",
            "--commitment_cost",
            "0.25",
            "--lambda_adv",
            "0.1",
            "--batch_size",
            "2",
            "--epochs",
            "1",
            "--max_steps",
            "2",
            "--disc_start",
            "1",
            "--patch_size",
            "64",
            "--channels",
            "8",
            "--disc_channels",
            "4",
            "--val_images",
            "1",
            "--train_sets",
            "kodak",
            "--val_sets",
            "kodak",
        ],
        cwd,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "checkpoints" / "best_model.pth").exists()
    with open(tmp_path / "logs" / "val.csv") as f:
        val = next(csv.DictReader(f))
    assert "perplexity_s0" in val and "codebook_usage_s1" in val


def test_main_flags_follow_the_config(tmp_path):
    r = run(["vq_vae_gan/main.py", "--help"], ROOT)
    assert r.returncode == 0
    for flag in (
        "--num_embeddings",
        "--commitment_cost",
        "--num_quantizers",
        "--dead_code_threshold",
        "--no-adaptive_weight",
    ):
        assert flag in r.stdout
    r = run(
        [
            "vq_vae_gan/main.py",
            "--output_dir",
            str(tmp_path),
            "--data_dir",
            str(tmp_path),
            "--downsample",
            "12",
        ],
        ROOT,
    )
    assert r.returncode == 2 and "power of two" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_sweeps_stages_into_rate_points(tiny_vq_path, shared_data, tmp_path):
    r = run(
        [
            "evaluate.py",
            "--model_path",
            str(tiny_vq_path),
            "--output_dir",
            str(tmp_path),
            "--data_dir",
            str(shared_data),
            "--limit",
            "1",
            "--no_fid",
            "--stages",
            "1",
            "2",
        ],
        ROOT / "vq_vae_gan",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "vq_vae_gan-kodak.json").read_text())
    assert result["name"] == "vq_vae_gan" and result["stages"] == [1, 2]
    bpp = result["results"]["bpp"]
    assert len(bpp) == 2 and bpp[0] < bpp[1]
    for row in result["index_coding"]:
        assert row["fixed_length_bits_per_index"] == 4.0
        assert 0 < row["bits_per_index"] and len(row["bits_per_index_per_stage"]) == row["stages"]
        usage = row["codebook_usage_per_stage"]
        assert len(usage) == row["stages"] and all(0 < u <= 1 for u in usage)
        assert all(0 <= e <= 4.0 + 1e-9 for e in row["index_entropy_per_stage"])
    files = sorted((tmp_path / "tiny_vq-stages1" / "bitstreams").iterdir())
    assert len(files) == 1 and (tmp_path / "tiny_vq-stages2" / "per_image.csv").exists()
    assert "bits per index" in r.stdout and "fixed-length" in r.stdout and "codebook usage" in r.stdout
    assert len(result["results"]["codebook_usage"]) == 2


def test_evaluate_refuses_another_family(tmp_path, tiny_beta_path):
    r = run(
        ["vq_vae_gan/evaluate.py", "--model_path", str(tiny_beta_path), "--data_dir", str(tmp_path)],
        ROOT,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "beta_vae_gan" in r.stderr
