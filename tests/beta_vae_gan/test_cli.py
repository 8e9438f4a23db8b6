"""The README's command lines: main.py and evaluate.py, from the repo root and from the folder."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ENV = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")


def run(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("cwd, script", [(ROOT, "beta_vae_gan/main.py"), (ROOT / "beta_vae_gan", "main.py")])
def test_main_runs_from_root_and_from_its_folder(cwd, script, shared_data, tmp_path):
    r = run(
        [
            script,
            "--output_dir",
            str(tmp_path),
            "--data_dir",
            str(shared_data),
            "--beta",
            "1.0",
            "--lambda_adv",
            "0.1",
            "--batch_size",
            "2",
            "--epochs",
            "1",
            "--max_steps",
            "2",
            "--patch_size",
            "64",
            "--N",
            "8",
            "--M",
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
    assert (tmp_path / "checkpoints" / "latest.pth").exists()


def test_main_reports_a_missing_dataset_without_traceback(tmp_path):
    r = run(["beta_vae_gan/main.py", "--output_dir", str(tmp_path), "--data_dir", str(tmp_path)], ROOT)
    assert r.returncode == 2
    assert "error: dataset 'bsds500/train' not found" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_writes_compressai_schema(tiny_beta_path, shared_data, tmp_path):
    r = run(
        [
            "evaluate.py",
            "--model_path",
            str(tiny_beta_path),
            "--output_dir",
            str(tmp_path),
            "--data_dir",
            str(shared_data),
            "--limit",
            "2",
        ],
        ROOT / "beta_vae_gan",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "beta_vae_gan-kodak.json").read_text())
    assert result["name"] == "beta_vae_gan"
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "estimated_bpp"):
        assert len(result["results"][key]) == 1
    per_image = (tmp_path / "tiny_beta" / "per_image.csv").read_text().splitlines()
    assert len(per_image) == 3
    files = sorted((tmp_path / "tiny_beta" / "bitstreams").iterdir())
    real_bpp = sum(8 * f.stat().st_size / (512 * 768) for f in files) / 2
    assert result["results"]["bpp"][0] == pytest.approx(real_bpp)
    assert len(list((tmp_path / "tiny_beta" / "reconstructions").glob("*.png"))) == 2


def test_evaluate_refuses_another_family(tmp_path, tiny_beta_path):
    import torch

    ckpt = torch.load(tiny_beta_path, weights_only=True)
    ckpt["family"] = "vq_vae_gan"
    torch.save(ckpt, tmp_path / "wrong.pth")
    r = run(
        [
            "beta_vae_gan/evaluate.py",
            "--model_path",
            str(tmp_path / "wrong.pth"),
            "--data_dir",
            str(tmp_path),
        ],
        ROOT,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "vq_vae_gan" in r.stderr


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("beta_vae_gan/main.py", ["--rate_levels", "1"], "rate_levels must be 0"),
        ("beta_vae_gan/main.py", ["--batch_size", "0"], "--batch_size must be at least 1"),
        ("beta_vae_gan/main.py", ["--lr", "0"], "--lr must be positive"),
        ("beta_vae_gan/main.py", ["--min_lr_ratio", "2"], "--min_lr_ratio must be between 0 and 1"),
        ("vq_vae_gan/main.py", ["--num_embeddings", "1"], "--num_embeddings must be at least 2"),
        ("hierarchical_vae_gan/main.py", ["--num_hierarchies", "9"], "--num_hierarchies must be between"),
    ],
)
def test_bad_settings_are_one_line_errors_before_anything_runs(script, flags, message, tmp_path):
    """The configs validate themselves on creation; main.py turns that into one line, exit code 2."""
    r = run([script, "--output_dir", str(tmp_path / "run"), *flags], ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing was written
