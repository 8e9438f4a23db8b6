"""BetaVAEGAN.widened: a wider latent that decodes exactly as before, and whose new channels can learn."""

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from tests.beta_vae_gan.test_variable_rate import smooth_image
from tests.conftest import TINY_BETA


@pytest.fixture
def trained_like():
    """A variable-rate model with a context whose every layer does something (fresh ones start at 0)."""
    torch.manual_seed(0)
    model = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, rate_levels=3, context="checkerboard"))
    with torch.no_grad():
        for p in model.context_model.refine[-1].parameters():
            p.normal_(0, 0.05)
        model.log_gain.add_(torch.randn_like(model.log_gain) * 0.3)
    return model.eval()


def test_the_wider_model_reconstructs_and_codes_its_old_channels_as_before(trained_like, rng):
    wide = trained_like.widened(TINY_BETA["M"] + 8).eval()
    assert wide.config.M == TINY_BETA["M"] + 8 and wide.log_gain.shape[1] == TINY_BETA["M"] + 8
    x = torch.rand(2, 3, 64, 64)
    for q in (1.0, 2.2, 3.0):
        with torch.no_grad():
            a, b = trained_like.at_quality(q)(x), wide.at_quality(q)(x)
        assert torch.allclose(a.x_hat, b.x_hat, atol=1e-5)
        M = TINY_BETA["M"]
        assert torch.allclose(a.likelihoods["y"], b.likelihoods["y"][:, :M], atol=1e-5)
        assert torch.allclose(a.likelihoods["z"], b.likelihoods["z"], atol=1e-6)


def test_its_files_decode_to_the_same_image(trained_like, rng, tmp_path):
    export_model(trained_like, tmp_path / "narrow.pth")
    export_model(trained_like.widened(TINY_BETA["M"] + 8), tmp_path / "wide.pth")
    narrow, wide = load_model(tmp_path / "narrow.pth"), load_model(tmp_path / "wide.pth")
    assert narrow.identity() != wide.identity()
    image = smooth_image(rng, 64, 96)
    for q in (1.0, 3.0):
        a = decompress_bytes(compress_image(narrow.at_quality(q), image), narrow)
        b = decompress_bytes(compress_image(wide.at_quality(q), image), wide)
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001


def test_the_new_channels_get_gradients_and_bad_widths_are_refused(trained_like):
    M = TINY_BETA["M"]
    wide = trained_like.widened(M + 8).train()
    out = wide(torch.rand(2, 3, 64, 64))
    (out.x_hat.square().mean() - out.likelihoods["y"].log().mean()).backward()
    assert wide.g_a[6].weight.grad[M:].abs().sum() > 0  # the encoder learns to raise them
    with pytest.raises(ValueError, match="larger"):
        trained_like.widened(M)
    realism = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, rate_levels=3, realism=True))
    with pytest.raises(ValueError, match="realism"):
        realism.widened(M + 8)


def test_init_from_a_narrower_checkpoint_widens_it(trained_like, tmp_path):
    from common.checkpoint import init_weights

    export_model(trained_like, tmp_path / "narrow.pth")
    M = TINY_BETA["M"]
    config = BetaVAEGANConfig(**(TINY_BETA | {"M": M + 8}), rate_levels=3, context="checkerboard")
    wide = BetaVAEGAN(config)
    said = []
    init_weights(tmp_path / "narrow.pth", wide, wide.build_discriminator(), said.append)
    assert any(f"latent widened from {M} to {M + 8} channels" in line for line in said)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = trained_like.at_quality(2.0)(x), wide.eval().at_quality(2.0)(x)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-4)
