"""common/losses.py: the generator loss weighs its terms as the training docstring says, and takes the
discriminator's verdict from the loop (the loss does not own the discriminator)."""

import pytest
import torch

from common.contract import ModelOutput
from common.losses import Critique, GeneratorLoss, rate_bpp
from common.train_config import TrainConfig


def _output(x: torch.Tensor) -> ModelOutput:
    torch.manual_seed(0)
    return ModelOutput(
        x_hat=(x + 0.1 * torch.randn_like(x)).requires_grad_(),
        likelihoods={"y": torch.rand(2, 4, 2, 2) * 0.9 + 0.05, "z": torch.rand(2, 2, 1, 1) * 0.9 + 0.05},
        extra_losses={"commitment": torch.tensor(0.25)},
    )


def test_rate_distortion_extra_adversarial_terms_add_up():
    x = torch.rand(2, 3, 8, 8)
    out = _output(x)
    cfg = TrainConfig(beta=2.0, lambda_adv=0.5)
    loss_fn = GeneratorLoss(cfg, None, "none", lambda loss, g_adv: None)
    rates = rate_bpp(out.likelihoods, 64)
    rd = cfg.lambda_d * 255**2 * torch.mean((out.x_hat - x) ** 2) + 2.0 * (rates["y"] + 3 * rates["z"])
    logits = torch.tensor([[0.5], [-1.5]])
    loss, logs = loss_fn(x, out, {"z": 3.0}, Critique(logits))
    assert float(loss) == pytest.approx(float(rd + 0.25 + 0.5 * 0.5), rel=1e-5)  # -mean(logits) = 0.5
    assert float(logs["g_adv"]) == pytest.approx(0.5) and "adv_weight" not in logs
    without, _ = loss_fn(x, out, {"z": 3.0})  # before --disc_start: no critique, no adversarial term
    assert float(loss - without) == pytest.approx(0.25, rel=1e-4)


def test_feature_matching_reads_the_critique_and_the_adaptive_weight_scales_the_adversarial_term():
    x = torch.rand(2, 3, 8, 8)
    out = _output(x)
    cfg = TrainConfig(lambda_adv=1.0, lambda_perceptual=2.0)
    loss_fn = GeneratorLoss(cfg, None, "disc-feature-matching", lambda loss, g_adv: torch.tensor(3.0))
    real = [torch.zeros(2, 4), torch.zeros(2, 1)]
    fake = [torch.ones(2, 4), torch.ones(2, 1)]
    loss, logs = loss_fn(x, out, {}, Critique(torch.ones(2, 1), fake, real))
    assert float(logs["perceptual"]) == pytest.approx(1.0)  # L1 over the layers before the logits
    assert float(logs["adv_weight"]) == 3.0 and float(logs["g_adv"]) == pytest.approx(-1.0)
    base, _ = loss_fn(x, out, {})
    assert float(loss - base) == pytest.approx(3.0 * -1.0 + 2.0 * 1.0, rel=1e-4)
