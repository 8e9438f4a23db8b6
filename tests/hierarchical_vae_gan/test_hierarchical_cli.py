"""The README's hierarchical VAE-GAN command lines: main.py and evaluate.py --compare_bits."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from common.checkpoint import export_model
from hierarchical_vae_gan.model import HierarchicalVAEGAN, HierarchicalVAEGANConfig
from tests.conftest import ROOT

ENV = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")


def run(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hier")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = HierarchicalVAEGAN(HierarchicalVAEGANConfig(N=16, M=8, disc_channels=4, attention_heads=2))
        paths.append(folder / f"tiny_hier_{seed}.pth")
        export_model(model.eval(), paths[-1])
    return paths


@pytest.mark.parametrize(
    "cwd, script", [(ROOT, "hierarchical_vae_gan/main.py"), (ROOT / "hierarchical_vae_gan", "main.py")]
)
def test_main_runs_from_root_and_from_its_folder(cwd, script, shared_data, tmp_path):
    r = run(
        [
            script,
            *("--output_dir", str(tmp_path), "--data_dir", str(shared_data)),
            *("--num_hierarchies", "3", "--beta", "1.0", "--lambda_adv", "0.1"),
            *("--batch_size", "2", "--epochs", "1", "--max_steps", "2", "--disc_start", "1"),
            *(
                "--patch_size",
                "64",
                "--N",
                "16",
                "--M",
                "8",
                "--disc_channels",
                "4",
                "--attention_heads",
                "2",
            ),
            *("--level_betas", "1,1,2", "--val_images", "1", "--train_sets", "kodak", "--val_sets", "kodak"),
            *("--progressive_weight", "0.5", "--log_every", "1"),
        ],
        cwd,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "checkpoints" / "best_model.pth").exists()
    with open(tmp_path / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(row["distortion_progressive"]) > 0 for row in rows)
    with open(tmp_path / "logs" / "val.csv") as f:
        val = next(csv.DictReader(f))
    assert {"bpp_l0", "bpp_l1", "bpp_l2"} <= set(val)


@pytest.mark.parametrize(
    "flags, message",
    [(["--num_hierarchies", "1"], "between 2 and 5"), (["--level_betas", "1,2"], "one per level")],
)
def test_bad_level_flags_get_one_line(flags, message, tmp_path):
    r = run(
        ["hierarchical_vae_gan/main.py", "--output_dir", str(tmp_path), "--data_dir", str(tmp_path), *flags],
        ROOT,
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_evaluate_compare_bits(tiny_paths, shared_data, tmp_path):
    r = run(
        [
            "evaluate.py",
            "--model_path",
            *map(str, tiny_paths),
            *("--output_dir", str(tmp_path), "--data_dir", str(shared_data)),
            *("--limit", "1", "--no_fid", "--compare_bits"),
        ],
        ROOT / "hierarchical_vae_gan",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "hierarchical_vae_gan-kodak.json").read_text())
    assert len(result["results"]["bpp"]) == 2  # one point per checkpoint: all levels
    assert sorted(result["points"]) == ["tiny_hier_0", "tiny_hier_1"]
    analysis = json.loads((tmp_path / "bit_allocation.json").read_text())
    assert len(analysis) == 2
    for a in analysis:
        shares = [lv["share"] for lv in a["bits"]["levels"]] + [a["bits"]["header"]["share"]]
        assert abs(sum(shares) - 1) < 1e-9 and all(s > 0 for s in shares)
        assert [p["levels"] for p in a["progressive"]] == [1, 2, 3]
        bpps = [p["bpp"] for p in a["progressive"]]
        assert bpps == sorted(bpps)
        assert abs(a["progressive"][-1]["bpp"] - a["bits"]["bpp"]) < 1e-9  # same files, same bytes
        assert (tmp_path / f"bit_allocation-{a['point']}.png").stat().st_size > 0
    assert "| top levels decoded |" in (tmp_path / "bit_allocation.md").read_text()
    # LPIPS is had offline (common/lpips_weights.py), so progressive decodes are scored with it too.
    assert "MS-SSIM | LPIPS |" in (tmp_path / "bit_allocation.md").read_text()
    assert all(p["lpips"] > 0 for a in analysis for p in a["progressive"])
    assert "level 2 (1/64)" in r.stdout
