"""Hierarchical VAE-GAN: latents at several scales, coded top-down, with self-attention at coarse scales.

Follows the ResNet-VAE / QRes-VAE structure (Kingma et al. 2016; Duan et al. 2023, "Lossy image
compression with quantized hierarchical VAEs"): a bottom-up encoder extracts features at 1/16, 1/32,
1/64 ...; a top-down decoder decodes the coarsest latent with a factorized prior, and each finer
latent with a mean-scale Gaussian prior computed from everything decoded above it::

    x --g_a--> f_0 (1/16) --down--> f_1 (1/32) --down--> f_2 (1/64)               (bottom-up)
                                                           |
                               y_2 = post(f_2) --[Q, factorized]--> y_2_hat --> d  (top level)
                                         |                                      |
            c_1 = up(d);  (mu, sigma) = prior(c_1);  y_1 = post(f_1, c_1) --[Q, N(mu, sigma)]--> y_1_hat
                                         |                   d = merge(c_1, y_1_hat)
            c_0 = up(d);  ... the same at 1/16 ...               d = merge(c_0, y_0_hat) --g_s--> x_hat

Each level's posterior is y_l + U(-1/2, 1/2), so its KL term is its rate in bits (``bpp_l<k>`` in the
logs), weighted by ``--beta`` times its ``--level_betas`` multiplier. Streams are written top level
first, so the first k streams of a file decode on their own: the levels below are set to their prior
means (progressive decoding, ``with_levels(k)``). ``--progressive_weight`` trains that decoding too:
each step also scores the reconstruction from the top k levels (k random), which gives the coarse
levels a reason to carry content instead of leaving it all to the finest one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.bitstream import MAX_STREAMS, Compressed
from common.cli import option
from common.contract import CompressionModel, Discriminator, ModelOutput
from common.entropy import EntropyBottleneck, GaussianConditional, round_ste
from common.errors import VAEGANError
from common.layers import (
    PatchTrunk,
    ResidualBlock,
    SelfAttention2d,
    conv,
    deconv,
    gdn_analysis,
    gdn_synthesis,
    pad_to_multiple,
)


@dataclass(frozen=True)
class HierarchicalVAEGANConfig:
    num_hierarchies: int = option(3, "latent levels, at 1/16, 1/32, 1/64, ...")
    N: int = option(128, "channels of the transforms")
    M: int = option(128, "channels of every latent level")
    attention_levels: int = option(2, "self-attention in this many coarsest levels (encoder and decoder)")
    attention_heads: int = option(4, "heads of each self-attention block")
    level_betas: str = option(
        "", "rate multiplier of each level, finest (1/16) first, e.g. 1,0.25,1; empty: all 1"
    )
    # > 0: every training step also decodes from the top k levels only (k uniform in 1..L-1, the rest
    # at their prior means) and adds this weight times that reconstruction's distortion, so that
    # progressive decoding is trained and the coarse levels must carry content of their own
    progressive_weight: float = option(
        0.0, "weight of the distortion of a decode from the top k levels only (k random); 0: off"
    )
    disc_channels: int = option(64, "width of the discriminator")

    def __post_init__(self):  # validated on creation
        _check(self)


def parse_level_betas(config: HierarchicalVAEGANConfig) -> list[float]:
    """``--level_betas`` as one float per level (finest first), checked."""
    L = config.num_hierarchies
    text = config.level_betas.strip() if isinstance(config.level_betas, str) else config.level_betas
    if not text:
        return [1.0] * L
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise VAEGANError(f"--level_betas must be {L} comma-separated numbers, got {text!r}") from None
    if len(values) != L:
        raise VAEGANError(f"--level_betas has {len(values)} values; --num_hierarchies is {L} (one per level)")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise VAEGANError(f"--level_betas must be finite and >= 0, got {text!r}")
    return values


def _check(config: HierarchicalVAEGANConfig) -> None:
    L = config.num_hierarchies
    if not 2 <= L <= min(5, MAX_STREAMS):
        raise VAEGANError(f"--num_hierarchies must be between 2 and 5 (latent scales 1/16 to 1/256), got {L}")
    if not 0 <= config.attention_levels <= L:
        raise VAEGANError(f"--attention_levels must lie in [0, {L}], got {config.attention_levels}")
    if config.N % config.attention_heads:
        raise VAEGANError(f"--N ({config.N}) must be a multiple of --attention_heads")
    parse_level_betas(config)
    if not (math.isfinite(config.progressive_weight) and config.progressive_weight >= 0):
        raise VAEGANError(f"--progressive_weight must be finite and >= 0, got {config.progressive_weight}")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class TopDown(nn.Module):
    """Everything both coder and decoder run: priors, posteriors' context, merges (level 0 = finest).

    Kept in one module so coding can run a float64 CPU copy of it: both sides must compute the
    same prior scales to pick the same coding tables.
    """

    def __init__(self, L: int, N: int, M: int, attention_levels: int, heads: int):
        super().__init__()
        self.L = L

        def attn(level: int) -> list[nn.Module]:
            return [SelfAttention2d(N, heads)] if level >= L - attention_levels else []

        top = L - 1
        self.top_in = nn.Sequential(nn.Conv2d(M, N, 3, padding=1), ResidualBlock(N), *attn(top))
        # posteriors: the top sees only its features; level l < top also sees the context c_l
        self.post = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(N if level == top else 2 * N, N, 3, padding=1),
                _act(),
                nn.Conv2d(N, M, 3, padding=1),
            )
            for level in range(L)
        )
        self.up = nn.ModuleList(
            nn.Sequential(deconv(N, N), _act(), ResidualBlock(N), *attn(level)) for level in range(L - 1)
        )
        self.prior = nn.ModuleList(
            nn.Sequential(nn.Conv2d(N, N, 3, padding=1), _act(), nn.Conv2d(N, 2 * M, 3, padding=1))
            for _ in range(L - 1)
        )
        self.merge = nn.ModuleList(
            nn.Sequential(nn.Conv2d(N + M, N, 3, padding=1), ResidualBlock(N)) for _ in range(L - 1)
        )

    def context(self, level: int, d: torch.Tensor) -> torch.Tensor:
        return self.up[level](d)

    def prior_params(self, level: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of level ``level`` given its context."""
        scales, means = self.prior[level](c).chunk(2, dim=1)
        return scales, means

    def posterior(self, level: int, f: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.post[level](f if c is None else torch.cat([f, c], dim=1))

    def combine(self, level: int, c: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        return self.merge[level](torch.cat([c, y_hat], dim=1))


class MultiScalePatchDiscriminator(Discriminator):
    """One PatchGAN head per latent level: head s sees the image at 1/2^s, conditioned on y_0_hat.

    The heads' logits are resized to the finest head's grid and stacked as channels, so the hinge
    loss of the common loop (a mean over the tensor) weighs every scale equally.
    """

    def __init__(self, latent_channels: int, channels: int, scales: int):
        super().__init__()
        self.cond = nn.Sequential(nn.Conv2d(latent_channels, 12, 3, padding=1), nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList(PatchTrunk(3 + 12, channels) for _ in range(scales))

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        c = self.cond(cond)
        features, logits = [], []
        for s, head in enumerate(self.heads):
            xs = F.avg_pool2d(x, 2**s) if s else x
            cs = F.interpolate(c, size=xs.shape[-2:], mode="nearest")
            out = head.features(torch.cat([xs * 2 - 1, cs], dim=1))
            features += out[:-1]
            logits.append(out[-1])
        size = logits[0].shape[-2:]
        stacked = torch.cat([F.interpolate(g, size=size, mode="nearest") for g in logits], dim=1)
        return features + [stacked]


class HierarchicalVAEGAN(CompressionModel):
    family = "hierarchical_vae_gan"
    layer_name = "levels"
    Config = HierarchicalVAEGANConfig

    def __init__(self, config: HierarchicalVAEGANConfig):
        super().__init__(config)
        L, N, M = config.num_hierarchies, config.N, config.M
        self.L = L
        self.pad_multiple = 16 * 2 ** (L - 1)
        self._level_betas = parse_level_betas(config)
        attn_from = L - config.attention_levels
        self.g_a = gdn_analysis(3, N, N)
        self.down = nn.ModuleList(
            nn.Sequential(
                _act(),
                conv(N, N),
                ResidualBlock(N),
                *([SelfAttention2d(N, config.attention_heads)] if level >= attn_from else []),
            )
            for level in range(1, L)
        )
        self.top_down = TopDown(L, N, M, config.attention_levels, config.attention_heads)
        self.g_s = gdn_synthesis(N, N, 3)
        self.entropy_bottleneck = EntropyBottleneck(M)  # top level
        self.gaussian_conditional = GaussianConditional()  # every other level (one scale table)

    # ---- levels -------------------------------------------------------------------------------

    def layer_count(self) -> int:
        """Each level is a layer, top level first: a file's top k streams decode on their own."""
        return self.L

    def with_levels(self, k: int) -> HierarchicalVAEGAN:
        """The hierarchical name for :meth:`with_layers`: codes (and evaluates) only the top k levels."""
        return self.with_layers(k)

    def rate_weights(self) -> dict[str, float]:
        return {f"l{level}": b for level, b in enumerate(self._level_betas)}

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.g_a(x * 2 - 1)]
        for block in self.down:
            feats.append(block(feats[-1]))
        return feats

    # ---- training -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Likelihoods ``l<level>`` for the transmitted levels; in evaluation, ``with_levels`` applies.

        In training with ``progressive_weight`` > 0 the output also holds ``progressive``: the same
        latents decoded from the top k levels only (k drawn per step), the levels below at their
        prior means, exactly what a file holding k streams decodes to.
        """
        k = self.L if self.training else self.coded_layers()
        partial = self.training and self.config.progressive_weight > 0
        lowest_sent = self.L - int(torch.randint(1, self.L, ())) if partial else None  # partial decode: top k
        feats = self._features(x)
        td, top = self.top_down, self.L - 1
        y_top = td.posterior(top, feats[top], None)
        _, lik = self.entropy_bottleneck(y_top)  # the rate of y + U(-1/2, 1/2) in training
        # the decoder sees the rounded top latent in training too (straight-through), as it will in a file
        y_hat = round_ste(y_top)
        likelihoods = {f"l{top}": lik}
        d = td.top_in(y_hat)
        d_partial = d if lowest_sent == top else None
        for level in reversed(range(top)):
            c = td.context(level, d)
            scales, means = td.prior_params(level, c)
            if level >= self.L - k:
                y = td.posterior(level, feats[level], c)
                y_hat, likelihoods[f"l{level}"] = self.gaussian_conditional(y, scales, means)
            else:
                y_hat = means  # not transmitted: its prior mean
            d = td.combine(level, c, y_hat)
            if level == lowest_sent:
                d_partial = d
        x_hat = (self.g_s(d) + 1) / 2
        extra = {}
        if partial:
            for level in reversed(range(lowest_sent)):  # the levels the partial file lacks
                c = td.context(level, d_partial)
                d_partial = td.combine(level, c, td.prior_params(level, c)[1])
            extra["progressive"] = ((self.g_s(d_partial) + 1) / 2, self.config.progressive_weight)
        return ModelOutput(x_hat=x_hat, likelihoods=likelihoods, cond=y_hat, extra_reconstructions=extra)

    def build_discriminator(self) -> nn.Module:
        return MultiScalePatchDiscriminator(self.config.M, self.config.disc_channels, self.L)

    # ---- coding -------------------------------------------------------------------------------

    def _coding_top_down(self) -> TopDown:
        """A float64 CPU copy: coder and decoder must derive bit-identical prior scales."""
        return copy.deepcopy(self.top_down).double().cpu()

    def latent_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of every level's latent, finest first, for an image of ``size``."""
        h, w = (math.ceil(n / self.pad_multiple) * self.pad_multiple for n in size)
        return [(h // (16 << level), w // (16 << level)) for level in range(self.L)]

    def transform_width(self) -> int:
        return self.config.N

    def memory_bytes(self, size: tuple[int, int]) -> int:
        """Activations, plus the attention scores of the largest attended level: heads x n² float64.

        Measured: 16384 positions, 4 heads, float64 peaked at 8.8 GB resident; this says 8.6 GB."""
        attended = self.latent_sizes(size)[self.L - self.config.attention_levels :]
        n = max((h * w for h, w in attended), default=0)
        return super().memory_bytes(size) + self.config.attention_heads * n * n * 8

    def _synthesis(self, d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        param = next(self.g_s.parameters())
        x_hat = (self.g_s(d.to(param.device, param.dtype)) + 1) / 2
        return x_hat[..., : size[0], : size[1]].clamp(0, 1)

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> Compressed:
        """One stream per level, top level first; only the top k when the view (``with_levels``) says so."""
        return self.encode_latents(x)[0]

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> tuple[Compressed, list]:
        """(file streams, the quantized latents the decoder will see, top level first)."""
        k = self.coded_layers()
        size = tuple(x.shape[-2:])
        feats = [f.double().cpu() for f in self._features(pad_to_multiple(x, self.pad_multiple))]
        td, top = self._coding_top_down(), self.L - 1
        stream, y_hat = self.entropy_bottleneck.compress(td.posterior(top, feats[top], None))
        streams, latents = [stream], [y_hat]
        d = td.top_in(y_hat)
        for level in reversed(range(self.L - k, top)):
            c = td.context(level, d)
            scales, means = td.prior_params(level, c)
            y = td.posterior(level, feats[level], c)
            stream, y_hat = self.gaussian_conditional.compress(y, scales, means)
            streams.append(stream)
            latents.append(y_hat)
            d = td.combine(level, c, y_hat)
        return Compressed(streams=streams, size=size), latents

    @torch.no_grad()
    def decode_latents(self, compressed: Compressed) -> tuple[list, torch.Tensor]:
        """(the decoded latents, top level first, then prior means; the features for g_s)."""
        k = len(compressed.streams)
        if not 1 <= k <= self.L:
            raise ValueError(f"file holds {k} levels; this model has {self.L}")
        sizes = self.latent_sizes(compressed.size)
        td, top = self._coding_top_down(), self.L - 1
        y_hat = self.entropy_bottleneck.decompress(compressed.streams[0], (1, self.config.M, *sizes[top]))
        latents = [y_hat]
        d = td.top_in(y_hat)
        for i, level in enumerate(reversed(range(top)), start=1):
            c = td.context(level, d)
            scales, means = td.prior_params(level, c)
            if i < k:
                y_hat = self.gaussian_conditional.decompress(compressed.streams[i], scales, means)
            else:
                y_hat = means  # not in the file: the prior mean
            latents.append(y_hat)
            d = td.combine(level, c, y_hat)
        return latents, d

    @torch.no_grad()
    def decompress(self, compressed: Compressed) -> torch.Tensor:
        """Decode the levels present (a prefix from the top); the rest take their prior means."""
        return self._synthesis(self.decode_latents(compressed)[1], compressed.size)
