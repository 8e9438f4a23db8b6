"""β-VAE-GAN: a continuous latent with a mean-scale hyperprior and a conditional PatchGAN critic.

Follows Ballé et al. 2018 ("Variational image compression with a scale hyperprior") with the
mean-scale prior of Minnen et al. 2018, and the latent-conditioned discriminator of HiFiC
(Mentzer et al. 2020)::

    x --g_a--> y --h_a--> z --[Q, factorized prior]--> z_hat --h_s--> (mu, sigma)
                 |                                                        |
                 +------------[Q, Gaussian(mu, sigma)]--------------------+--> y_hat --g_s--> x_hat
    D(x or x_hat | y_hat) -> real/fake logits per patch

The posterior q(y~|x) = U(y - 1/2, y + 1/2) has unit density, so KL(q || p) = E[-log p(y~)]: the
KL term *is* the rate, and ``--beta`` weights it against distortion.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from common.bitstream import Compressed
from common.cli import option
from common.contract import CompressionModel, ModelOutput
from common.entropy import EntropyBottleneck, GaussianConditional
from common.layers import PatchTrunk, conv, deconv, gdn_analysis, gdn_synthesis, pad_to_multiple


@dataclass
class BetaVAEGANConfig:
    N: int = option(128, "channels inside the transforms")
    M: int = option(192, "channels of the latent y")
    disc_channels: int = option(64, "width of the discriminator")


class ConditionalPatchDiscriminator(nn.Module):
    """PatchGAN on the image, conditioned on the upsampled quantized latent (as in HiFiC)."""

    def __init__(self, latent_channels: int, channels: int = 64, upsample: int = 16):
        super().__init__()
        self.cond = nn.Sequential(
            nn.Conv2d(latent_channels, 12, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=upsample, mode="nearest"),
        )
        self.net = PatchTrunk(3 + 12, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.features(x, cond)[-1]

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Activations after each LeakyReLU of the trunk, then the logits (last): for feature matching."""
        c = self.cond(cond)[..., : x.shape[-2], : x.shape[-1]]
        return self.net.features(torch.cat([x * 2 - 1, c], dim=1))


class BetaVAEGAN(CompressionModel):
    family = "beta_vae_gan"
    Config = BetaVAEGANConfig
    pad_multiple = 64

    def transform_width(self) -> int:
        return self.config.N

    def __init__(self, config: BetaVAEGANConfig):
        super().__init__(config)
        N, M = config.N, config.M
        self.g_a = gdn_analysis(3, N, M)
        self.g_s = gdn_synthesis(M, N, 3)
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)
        )
        self.h_s = nn.Sequential(
            deconv(N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, 2 * M, 3, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        y = self.g_a(x * 2 - 1)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
        x_hat = (self.g_s(y_hat) + 1) / 2
        return ModelOutput(x_hat=x_hat, likelihoods={"y": y_likelihoods, "z": z_likelihoods}, cond=y_hat)

    def build_discriminator(self) -> nn.Module:
        return ConditionalPatchDiscriminator(self.config.M, self.config.disc_channels)

    # ---- coding -------------------------------------------------------------------------------

    def _entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_s in float64 on CPU: both sides must pick identical scale-table indexes."""
        h_s = copy.deepcopy(self.h_s).double().cpu()
        with torch.no_grad():
            scales, means = h_s(z_hat.double().cpu()).chunk(2, dim=1)
        return scales, means

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> Compressed:
        size = tuple(x.shape[-2:])
        y = self.g_a(pad_to_multiple(x, self.pad_multiple) * 2 - 1)
        z = self.h_a(y)
        z_string, z_hat = self.entropy_bottleneck.compress(z)
        scales, means = self._entropy_parameters(z_hat)
        y_string, _ = self.gaussian_conditional.compress(y, scales, means)
        return Compressed(streams=[y_string, z_string], size=size)

    @torch.no_grad()
    def decompress(self, compressed: Compressed) -> torch.Tensor:
        h, w = compressed.size
        zh, zw = math.ceil(h / self.pad_multiple), math.ceil(w / self.pad_multiple)  # z is 1/64
        y_string, z_string = compressed.streams
        z_hat = self.entropy_bottleneck.decompress(z_string, (1, self.config.N, zh, zw))
        scales, means = self._entropy_parameters(z_hat)
        y_hat = self.gaussian_conditional.decompress(y_string, scales, means)
        param = next(self.g_s.parameters())
        x_hat = (self.g_s(y_hat.to(param.device, param.dtype)) + 1) / 2
        return x_hat[..., :h, :w].clamp(0, 1)
