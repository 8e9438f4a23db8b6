"""scripts/rate_control.py: every image's real file within the tolerance of the target, or said."""

import json
import sys

import torch
from PIL import Image

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import export_model, load_model
from common.cli import run_cli
from common.codec import compress_image
from common.metrics import file_bpp
from tests.beta_vae_gan.test_variable_rate import smooth_image
from tests.conftest import ROOT, TINY_BETA

sys.path.insert(0, str(ROOT / "scripts"))
import rate_control  # noqa: E402


def test_targets_met_per_image_and_unreachable_ones_reported(tmp_path, rng, capsys):
    torch.manual_seed(0)
    path = tmp_path / "vr.pth"
    export_model(BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, rate_levels=4, rate_span=400.0)).eval(), path)
    folder = tmp_path / "images"
    folder.mkdir()
    images = [smooth_image(rng, 128, 128) for _ in range(2)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    model = load_model(path)
    lo = max(file_bpp(len(compress_image(model.at_quality(1), im)), 128, 128) for im in images)
    hi = min(file_bpp(len(compress_image(model.at_quality(4), im)), 128, 128) for im in images)
    target = (lo * hi) ** 0.5
    out = tmp_path / "rc.json"
    argv = ["--model_path", str(path), "--dataset", str(folder), "--bpp", str(target), "--output", str(out)]
    assert run_cli(rate_control.main, argv) == 0
    result = json.loads(out.read_text())
    assert result["misses"] == 0 and len(result["rows"]) == 2
    assert all(abs(r["bpp"] / target - 1) <= 0.03 for r in result["rows"])
    assert run_cli(rate_control.main, argv[:-4] + ["--bpp", str(hi * 5)]) == 1
    printed = capsys.readouterr().out
    assert "0/2 images within 3%" in printed
