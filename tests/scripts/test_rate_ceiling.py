"""scripts/rate_ceiling.py: where quantization stops costing PSNR, the rounded decode meets the unrounded."""

import json
import sys

import pytest
import torch
from PIL import Image

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import export_model
from common.cli import run_cli
from tests.beta_vae_gan.test_variable_rate import smooth_image
from tests.conftest import ROOT, TINY_BETA

sys.path.insert(0, str(ROOT / "scripts"))
import rate_ceiling  # noqa: E402


@pytest.fixture
def folder(tmp_path, rng):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(rng, 64, 96)).save(images / f"{i}.png")
    return images


def test_coarse_steps_cost_psnr_and_fine_ones_reach_the_ceiling(tmp_path, folder, capsys):
    torch.manual_seed(0)
    model = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, rate_levels=3, rate_span=4.0))
    with torch.no_grad():  # quality 1: every latent rounds to 0; quality 3: steps of 1e-4
        model.log_gain.copy_(torch.tensor([-30.0, 0.0, 9.2])[:, None].expand_as(model.log_gain))
        model.log_inverse_gain.copy_(-model.log_gain)
    path = tmp_path / "vr.pth"
    export_model(model.eval(), path)
    out = tmp_path / "ceiling.json"
    argv = ["--model_path", str(path), "--dataset", str(folder), "--output", str(out)]
    assert run_cli(rate_ceiling.main, argv) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 2 and len(result["per_image"]) == 6
    assert [m["quality"] for m in result["means"]] == [1.0, 2.0, 3.0]
    lo, _, hi = result["means"]
    # the gains cancel when unrounded: one ceiling at every quality
    assert lo["psnr_unrounded"] == pytest.approx(hi["psnr_unrounded"], abs=1e-3)
    assert hi["psnr_rounded"] == pytest.approx(hi["psnr_unrounded"], abs=0.01)
    # the images themselves: fine steps decode as the unrounded latent, coarse ones as a latent of zeros
    x = torch.rand(1, 3, 64, 128)
    [(unrounded, rounded)] = rate_ceiling.ceiling(model, x, [3.0])
    assert (rounded - unrounded).abs().max() < 1e-3
    [(unrounded, rounded)] = rate_ceiling.ceiling(model, x, [1.0])
    with torch.no_grad():
        zeros = model._synthesize(torch.zeros(1, model.config.M, 4, 8), None).clamp(0, 1)
    assert torch.equal(rounded, zeros) and (unrounded - zeros).abs().max() > 1e-4
    assert result["command"].startswith("python scripts/rate_ceiling.py --model_path")
    assert "wrote" in capsys.readouterr().out


def test_other_models_get_a_clear_error(tmp_path, folder):
    path = tmp_path / "fixed.pth"
    export_model(BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).eval(), path)
    argv = ["--model_path", str(path), "--dataset", str(folder)]
    assert run_cli(rate_ceiling.main, argv) == 2
    assert run_cli(rate_ceiling.main, argv + ["--quality", "0.5"]) == 2
