"""Building blocks shared by the families: strided convolutions, GDN, residual and attention blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


def gdn_analysis(in_ch: int, N: int, out_ch: int) -> nn.Sequential:
    """Ballé's analysis transform: four 5x5 stride-2 convolutions with GDN between (1/16 resolution)."""
    return nn.Sequential(conv(in_ch, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, out_ch))


def gdn_synthesis(in_ch: int, N: int, out_ch: int) -> nn.Sequential:
    """The mirror of :func:`gdn_analysis`: four transposed convolutions with inverse GDN between."""
    return nn.Sequential(
        deconv(in_ch, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, out_ch),
    )


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when x is below the bound but wants to rise."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad):
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad < 0)
        return pass_through.type_as(grad) * grad, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, torch.tensor(bound, dtype=x.dtype, device=x.device))


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016); ``inverse=True`` gives IGDN.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2). Parameters are stored as square roots with a
    lower bound, which keeps them positive and well conditioned during training.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self._pedestal = 2.0**-36
        self._beta_bound = (beta_min + self._pedestal) ** 0.5
        self._gamma_bound = self._pedestal**0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        gamma = gamma_init * torch.eye(channels) + self._pedestal
        self.gamma = nn.Parameter(torch.sqrt(gamma))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = lower_bound(self.beta, self._beta_bound) ** 2 - self._pedestal
        gamma = lower_bound(self.gamma, self._gamma_bound) ** 2 - self._pedestal
        norm = F.conv2d(x * x, gamma.view(channels, channels, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FourierFeatures(nn.Module):
    """A scalar in [0, 1] as sines and cosines of fixed frequencies (and itself), for an MLP to read:
    a bare scalar input makes small MLPs nearly linear in it (Tancik et al. 2020)."""

    def __init__(self, frequencies: int = 8):
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), False)
        self.dim = 2 * frequencies + 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None].float() * self.freqs
        return torch.cat([t[:, None].float(), angles.sin(), angles.cos()], dim=1)


class ConditionedResidual(nn.Module):
    """x + w * gate(e) * body(x; e): a residual block modulated by an embedding ``e`` (FiLM inside,
    a per-channel gate outside) and scaled by ``w`` per image.

    The gate starts at zero (adaLN-Zero, Peebles & Xie 2023), so a block added to a trained network
    changes nothing until it learns to; ``w = 0`` returns x exactly, bit for bit."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * channels)
        self.gate = nn.Linear(embed_dim, channels)
        for layer in (self.film, self.gate):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(e)[..., None, None].chunk(2, dim=1)
        h = F.leaky_relu(self.conv1(x) * (1 + scale) + shift, 0.2)
        return x + (w[:, None] * self.gate(e))[..., None, None] * self.conv2(h)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the spatial positions of a feature map (SAGAN-style residual)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        # at least two channels per group, so a 1x1 map (a small image's coarsest level) still normalises
        self.norm = nn.GroupNorm(min(32, max(1, channels // 2)), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + self.gate * out.transpose(1, 2).reshape(b, c, h, w)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges so both sides are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class PatchTrunk(nn.Sequential):
    """PatchGAN trunk (Isola et al. 2017): spectral-normalised 4x4 convolutions, then per-patch logits.

    Shared by every family's discriminator; ``features`` returns the activation after each
    LeakyReLU and, last, the logits, which is what feature matching needs.
    """

    def __init__(self, in_ch: int, channels: int = 64):
        from torch.nn.utils.parametrizations import spectral_norm

        layers, c = [], channels
        for out_ch, stride in ((c, 2), (2 * c, 2), (4 * c, 2), (8 * c, 1)):
            layers += [spectral_norm(nn.Conv2d(in_ch, out_ch, 4, stride, padding=1)), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        layers.append(nn.Conv2d(in_ch, 1, 1))
        super().__init__(*layers)

    def features(self, h: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                out.append(h)
        return out + [h]
