"""Variable rate by gain units (Cui et al. 2021), shared by the families that offer it (β, hierarchical).

One network serves every rate: quality q in [1, R] picks gain vectors, interpolated log-linearly
between R learned anchors. A latent is coded as round(g * y) under its prior scaled by g (exact for a
Gaussian) and decoded as g' * y_hat. In training every image draws its own q, and its rate term is
weighted by beta * span^(1/2 - t), t = (q - 1) / (R - 1): a low q trades bits for distortion like a
large beta. A file carries q as a 2-byte stream (in steps of 1 / ``quality_scale``), so the decoder
needs nothing but the file.

The gain tables stay parameters of the model itself (``log_gain`` ...), where the checkpoints of
the β family have always kept them; this mixin holds the logic.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import torch

from common.cli import option
from common.errors import CorruptFileError, VAEGANError


@dataclass(frozen=True)
class VariableRateConfig:
    """The variable-rate settings; a family's config dataclass inherits them (β, hierarchical)."""

    rate_levels: int = option(
        0, "variable rate: number of learned rate anchors (quality 1..R, continuous); 0: one fixed rate"
    )
    rate_span: float = option(
        4000.0,
        "variable rate: ratio of the β the lowest and the highest quality train for (centred on --beta)",
    )
    rate_balance: float = option(
        0.0,
        "variable rate: weight each image's loss by (its beta multiplier)^-b; 0.25 gives the lowest and "
        "highest rates losses of similar size (else the low rates' larger losses dominate)",
    )

    def __post_init__(self):  # validated on creation
        if self.rate_levels == 1 or self.rate_levels < 0:
            raise VAEGANError(f"--rate_levels must be 0 (fixed rate) or at least 2, not {self.rate_levels}")
        if not self.rate_span >= 1:
            raise VAEGANError(f"--rate_span must be at least 1, not {self.rate_span}")


def anchor_log_gains(rate_levels: int, rate_span: float) -> torch.Tensor:
    """(R,) initial log gains: anchor r trains for beta_r = beta * span^(1/2 - r/(R-1)), and a step of
    sqrt(beta_r) keeps a fixed-rate model's trade-off at beta (gain 1), so fine-tuning starts close."""
    t = torch.linspace(0, 1, rate_levels)
    return -0.5 * (0.5 - t) * math.log(rate_span)


class VariableRate:
    """Mixin for a :class:`common.contract.CompressionModel` whose config has ``rate_levels`` (0: one
    fixed rate), ``rate_span`` and ``rate_balance``; runtime setting ``quality`` (a view's)."""

    quality: float | None = None

    def quality_range(self) -> tuple[float, float] | None:
        return (1.0, float(self.config.rate_levels)) if self.config.rate_levels else None

    def _quality(self) -> float:
        """The quality coded at: the view's, else the middle of the range; rounded as the file stores it."""
        lo, hi = self.quality_range()
        q = (lo + hi) / 2 if self.quality is None else self.quality
        return round(min(max(q, lo), hi) * self.quality_scale) / self.quality_scale

    def rate_points(self):
        """A fixed-rate model: itself; a variable-rate one: a view at each integer quality."""
        if not self.config.rate_levels:
            return [(self, "")]
        return [(self.at_quality(q), f"-q{q}") for q in range(1, self.config.rate_levels + 1)]

    def at_quality(self, quality: float):
        lo, hi = self.quality_range() or (None, None)
        if lo is None:
            raise ValueError("this is a fixed-rate model: it has no quality to choose")
        if not lo <= quality <= hi:
            raise ValueError(f"quality must be between {lo:g} and {hi:g}, not {quality:g}")
        return self.view(quality=float(quality))

    def forward_qualities(self, n: int, device) -> torch.Tensor:
        """Training: each image its own quality, uniform over the range; evaluation: the view's."""
        if self.training:
            return 1 + torch.rand(n, device=device) * (self.config.rate_levels - 1)
        return torch.full((n,), self._quality(), device=device)

    def interpolate_gains(
        self, tables: list[torch.Tensor], q: torch.Tensor, dtype=None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each (R, C) log-gain table at qualities ``q`` (B,), as gains (B, C, 1, 1), anchors
        interpolated log-linearly; and the β multiplier (B,) of each image."""
        R = self.config.rate_levels
        if dtype is not None:
            tables, q = [t.to(dtype) for t in tables], q.to(dtype)
        pos = (q - 1).clamp(0, R - 1)
        low = pos.floor().long().clamp(max=R - 2)
        frac = (pos - low)[:, None]
        gains = [torch.exp(torch.lerp(t[low], t[low + 1], frac))[..., None, None] for t in tables]
        beta_scale = self.config.rate_span ** (0.5 - pos / (R - 1))
        return gains, beta_scale

    def coding_gains(self, tables: list[torch.Tensor], quality: float) -> list[torch.Tensor]:
        """Gains in float64 on CPU, from the quality the file stores: coder and decoder get the same."""
        gains, _ = self.interpolate_gains(
            tables, torch.tensor([quality], dtype=torch.float64), dtype=torch.float64
        )
        return [g.detach().cpu() for g in gains]

    def image_weight(self, beta_scale: torch.Tensor) -> torch.Tensor | None:
        """Per-image loss weight (``--rate_balance``): the low rates' larger losses would dominate."""
        return beta_scale**-self.config.rate_balance if self.config.rate_balance else None

    def quality_stream(self, quality: float) -> bytes:
        return struct.pack("<H", round(quality * self.quality_scale))

    def read_quality(self, q_string: bytes) -> float:
        """The quality a file's quality stream holds, checked against the model's range."""
        if len(q_string) != 2:
            raise CorruptFileError("file is damaged (it lacks the variable-rate model's quality field)")
        quality = struct.unpack("<H", q_string)[0] / self.quality_scale
        lo, hi = self.quality_range()
        if not lo <= quality <= hi:
            raise CorruptFileError(f"file is damaged (quality {quality:g} is outside {lo:g}..{hi:g})")
        return quality
