"""Hierarchical VAE-GAN: latents at several scales, coded top-down, with self-attention at coarse scales.

A top-down hierarchy in the manner of ResNet-VAE / QRes-VAE (Kingma et al. 2016; Duan et al. 2023,
"Lossy image compression with quantized hierarchical VAEs") whose finest level is the β family's
latent: g_a maps the image to y at 1/16 and g_s maps y_hat back, with the same layers as the β
model, so the family can start from trained β weights (``--init_from`` a β checkpoint). Above y, a
bottom-up path extracts features at 1/32, 1/64 ...; the top latent z has a factorized prior, and
every finer latent a mean-scale Gaussian prior computed from everything decoded above it::

    x --g_a--> y (1/16) --down--> f_1 (1/32) --down--> z (1/64)                    (bottom-up)
                                                        |
                                      [Q, factorized] z_hat --> d
                                                                |
      c_1 = up(d);  (mu, sigma) = prior(c_1);  w = post(f_1, c_1) --[Q, N(mu, sigma)]--> w_hat
                                                                d = c_1 + merge(w_hat)
      c_0 = up(d);  (mu, sigma) = prior(c_0);  y --[Q, N(mu, sigma)]--> y_hat --g_s--> x_hat

With three levels this is the β model's hyperprior with one more latent between y and z (the β
h_a and h_s split at 1/32, where the new level joins through a residual merge), so a model
initialised from β weights starts with β's transforms, hyper-transforms and entropy models, and
writes β's z stream. Self-attention sits at the coarse levels.

Each level's posterior is its latent + U(-1/2, 1/2), so its KL term is its rate in bits (``bpp_l<k>``
in the logs), weighted by ``--beta`` times its ``--level_betas`` multiplier. Streams are written top
level first, so the first k streams of a file decode on their own: the levels below are set to their
prior means (progressive decoding, ``with_levels(k)``). ``--progressive_weight`` trains that decoding
too: each step also scores the reconstruction from the top k levels (k random).

Variable rate (``--rate_levels R``): the gain units of the β family (:mod:`common.variable_rate`)
on every level, so one checkpoint codes every rate; the file's first stream holds the quality.
``--freeze_transforms`` trains the levels above y and the priors only (rate alone: the distortion
is fixed), the cheap first stage from a β checkpoint.
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
from common.errors import CheckpointError, CorruptFileError, VAEGANError
from common.layers import (
    PatchTrunk,
    SelfAttention2d,
    conv,
    deconv,
    gdn_analysis,
    gdn_synthesis,
    pad_to_multiple,
)
from common.variable_rate import VariableRate, VariableRateConfig, anchor_log_gains


@dataclass(frozen=True)
class HierarchicalVAEGANConfig(VariableRateConfig):
    num_hierarchies: int = option(3, "latent levels, at 1/16, 1/32, 1/64, ...")
    N: int = option(128, "channels of the transforms and of the latents above the finest")
    M: int = option(192, "channels of the finest latent y (1/16)")
    attention_levels: int = option(2, "self-attention in this many coarsest levels (not the finest)")
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
    freeze_transforms: bool = option(
        False,
        "train only the levels above the finest and the priors (g_a, g_s and the finest level's gains "
        "stay as initialised): the first stage from a β checkpoint (--init_from)",
    )

    def __post_init__(self):  # validated on creation
        super().__post_init__()
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
    if not 2 <= L <= min(5, MAX_STREAMS - 1):  # one stream more: the quality
        raise VAEGANError(f"--num_hierarchies must be between 2 and 5 (latent scales 1/16 to 1/256), got {L}")
    if not 0 <= config.attention_levels <= L - 1:
        raise VAEGANError(
            f"--attention_levels must lie in [0, {L - 1}] (the levels above the finest), got {config.attention_levels}"
        )
    if config.N % config.attention_heads or config.M % config.attention_heads:
        raise VAEGANError(f"--N ({config.N}) and --M ({config.M}) must be multiples of --attention_heads")
    parse_level_betas(config)
    if not (math.isfinite(config.progressive_weight) and config.progressive_weight >= 0):
        raise VAEGANError(f"--progressive_weight must be finite and >= 0, got {config.progressive_weight}")


def _act() -> nn.Module:
    return nn.LeakyReLU()  # the β family's hyper-transforms' activation (their weights load as they are)


class TopDown(nn.Module):
    """Everything both coder and decoder run above g_s: contexts, priors, posteriors, merges (level 0 =
    finest, y). Kept in one module so coding can run a float64 CPU copy of it: both sides must compute
    the same prior scales to pick the same coding tables.

    ``up[l]`` maps the decoded state d of level l + 1 to the context c_l of level l; ``prior[l]`` maps
    c_l to (scales, means) of level l's latent; a level between y and the top also has a posterior
    (its features and c_l) and a merge, d_l = c_l + merge(w_hat)."""

    def __init__(self, L: int, N: int, M: int, attended: set[int], heads: int):
        super().__init__()
        self.L = L
        top = L - 1
        # the top's decoded state is z_hat itself (N channels); a middle level's is M channels
        self.top_in = nn.Sequential(*([SelfAttention2d(N, heads)] if top in attended else []))
        width = 3 * M // 2
        self.up = nn.ModuleList(
            nn.Sequential(deconv(N if level + 1 == top else M, width), _act())
            if level == 0
            else nn.Sequential(
                deconv(N if level + 1 == top else M, M),
                _act(),
                *([SelfAttention2d(M, heads)] if level in attended else []),
            )
            for level in range(top)
        )
        self.prior = nn.ModuleList(
            conv(width, 2 * M, 3, 1)
            if level == 0
            else nn.Sequential(conv(M, N, 3, 1), _act(), conv(N, 2 * N, 3, 1))
            for level in range(top)
        )
        middle = range(1, top)
        self.post = nn.ModuleDict(
            {str(level): nn.Sequential(conv(N + M, N, 3, 1), _act(), conv(N, N, 3, 1)) for level in middle}
        )
        # Not zero-initialised (ReZero-style), which would start a model loaded from β exactly as β:
        # measured, the level then collapses within 250 steps (its posterior sits on the prior mean,
        # 0 bits, because the rate's pull wins before the merge has grown enough to make it useful)
        self.merge = nn.ModuleDict({str(level): conv(N, M, 3, 1) for level in middle})

    def prior_params(self, level: int, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(context c, scales, means) of level ``level`` given the decoded state ``d`` of the level above."""
        c = self.up[level](d)
        scales, means = self.prior[level](c).chunk(2, dim=1)
        return c, scales, means

    def posterior(self, level: int, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.post[str(level)](torch.cat([f, c], dim=1))

    def combine(self, level: int, c: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        return c + self.merge[str(level)](w_hat)


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


class HierarchicalVAEGAN(VariableRate, CompressionModel):
    family = "hierarchical_vae_gan"
    layer_name = "levels"
    Config = HierarchicalVAEGANConfig

    def __init__(self, config: HierarchicalVAEGANConfig):
        super().__init__(config)
        L, N, M = config.num_hierarchies, config.N, config.M
        self.L = L
        self.pad_multiple = 16 * 2 ** (L - 1)
        self._level_betas = parse_level_betas(config)
        self.attended = set(range(L - config.attention_levels, L)) - {0}
        heads = config.attention_heads
        self.g_a = gdn_analysis(3, N, M)
        self.g_s = gdn_synthesis(M, N, 3)
        # bottom-up: y -> f_1 (1/32) -> ... -> z (the top latent); down[0] and down[1] are the β h_a
        self.down = nn.ModuleList(
            nn.Sequential(
                *((conv(M, N, 3, 1), _act(), conv(N, N)) if level == 1 else (_act(), conv(N, N))),
                *([SelfAttention2d(N, heads)] if level in self.attended else []),
            )
            for level in range(1, L)
        )
        self.top_down = TopDown(L, N, M, self.attended, heads)
        self.entropy_bottleneck = EntropyBottleneck(N)  # top level
        self.gaussian_conditional = GaussianConditional()  # every other level (one scale table)
        R = config.rate_levels
        if R:
            # the β family's gain names for y (level 0) and z (the top), so β weights load as they are
            log_gain = anchor_log_gains(R, config.rate_span)
            self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, M))
            self.log_inverse_gain = nn.Parameter(-log_gain[:, None].repeat(1, M))
            self.log_hyper_gain = nn.Parameter(torch.zeros(R, N))
            self.log_hyper_inverse_gain = nn.Parameter(torch.zeros(R, N))
            if L > 2:  # the levels between: (level - 1, gain / inverse gain, anchor, channel)
                self.log_level_gain = nn.Parameter(torch.zeros(L - 2, 2, R, N))
        self.quality: float | None = None  # runtime setting (see at_quality); not in the weights

    # ---- levels -------------------------------------------------------------------------------

    def layer_count(self) -> int:
        """Each level is a layer, top level first: a file's top k streams decode on their own."""
        return self.L

    def with_levels(self, k: int) -> HierarchicalVAEGAN:
        """The hierarchical name for :meth:`with_layers`: codes (and evaluates) only the top k levels."""
        return self.with_layers(k)

    def rate_weights(self) -> dict[str, float]:
        return {f"l{level}": b for level, b in enumerate(self._level_betas)}

    def _features(self, y: torch.Tensor) -> list[torch.Tensor]:
        """[y, f_1, ..., z]: the finest latent and the bottom-up features of every level above it."""
        feats = [y]
        for block in self.down:
            feats.append(block(feats[-1]))
        return feats

    def trainable_parameters(self) -> list[nn.Parameter]:
        if not self.config.freeze_transforms:
            return list(self.parameters())
        frozen = {"g_a.", "g_s.", "log_gain", "log_inverse_gain"}
        return [p for name, p in self.named_parameters() if not any(name.startswith(f) for f in frozen)]

    # ---- rate ---------------------------------------------------------------------------------

    def _gain_tables(self) -> list[torch.Tensor]:
        """Log gains, (R, C) each: y's pair, the top's pair, then each middle level's pair."""
        tables = [self.log_gain, self.log_inverse_gain, self.log_hyper_gain, self.log_hyper_inverse_gain]
        for i in range(self.L - 2):
            tables += [self.log_level_gain[i, 0], self.log_level_gain[i, 1]]
        return tables

    def _level_gains(self, gains: list | None, level: int) -> tuple:
        """(gain, inverse gain) of ``level`` (1, 1 for a fixed-rate model)."""
        if gains is None:
            return 1.0, 1.0
        i = 0 if level == 0 else 2 if level == self.L - 1 else 2 + 2 * level
        return gains[i], gains[i + 1]

    def level_streams(self, compressed: Compressed) -> list[bytes]:
        """A file's level streams, top level first (a variable-rate file's quality stream left out)."""
        return compressed.streams[1:] if self.config.rate_levels else compressed.streams

    def file_quality(self, compressed: Compressed) -> float | None:
        """The quality a variable-rate file was written at (None for a fixed-rate model's file)."""
        if not self.config.rate_levels:
            return None
        return self.read_quality(compressed.streams[0] if compressed.streams else b"")

    # ---- training -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Likelihoods ``l<level>`` for the transmitted levels; in evaluation, ``with_levels`` applies.

        With ``progressive_weight`` > 0 the output also holds the decode from the top k levels only,
        the levels below at their prior means, exactly what a file holding k streams decodes to: in
        training one k drawn per step, in evaluation every k < L (each with its share of the weight,
        so validation scores what training optimises on average)."""
        k = self.L if self.training else self.coded_layers()
        weight = self.config.progressive_weight
        # the top j levels a training step's partial decode keeps (drawn first: tests repeat the draw)
        j = int(torch.randint(1, self.L, ())) if self.training and weight > 0 else None
        gains, beta_scale = None, None
        if self.config.rate_levels:
            gains, beta_scale = self.interpolate_gains(
                self._gain_tables(), self.forward_qualities(x.shape[0], x.device)
            )
        feats = self._features(self.g_a(x * 2 - 1))
        td, top = self.top_down, self.L - 1
        hg, ihg = self._level_gains(gains, top)
        z_g = feats[top] * hg
        _, lik = self.entropy_bottleneck(z_g)  # the rate of z + U(-1/2, 1/2) in training
        # the decoder sees the rounded top latent in training too (straight-through), as it will in a file
        d = td.top_in(round_ste(z_g) * ihg)
        likelihoods = {f"l{top}": lik}
        states = {top: d}  # the decoded state after each level (what a file cut there decodes from)
        for level in reversed(range(top)):
            c, scales, means = td.prior_params(level, d)
            if level >= self.L - k:
                g, ig = self._level_gains(gains, level)
                latent = feats[0] if level == 0 else td.posterior(level, feats[level], c)
                v_hat, likelihoods[f"l{level}"] = self.gaussian_conditional(latent * g, scales * g, means * g)
                v_hat = v_hat * ig
            else:
                v_hat = means  # not transmitted: its prior mean
            if level:
                d = states[level] = td.combine(level, c, v_hat)
        y_hat = v_hat
        # frozen transforms: y_hat's gradient is zero (round_ste(y - mu) + mu), so g_s needs no backward
        frozen = self.training and self.config.freeze_transforms
        x_hat = (self.g_s(y_hat.detach() if frozen else y_hat) + 1) / 2
        extra = {}
        if weight > 0 and k == self.L:
            # decode from the top j levels: the state after level L - j, the levels below at prior means
            if self.training:  # one j per step, under one name (the run logs keep their columns)
                extra["progressive"] = (self._decode_means(states[self.L - j], self.L - j), weight)
            else:
                for j in range(1, self.L):
                    x_j = self._decode_means(states[self.L - j], self.L - j)
                    extra[f"progressive_top{j}"] = (x_j, weight / (self.L - 1))
        return ModelOutput(
            x_hat=x_hat,
            likelihoods=likelihoods,
            cond=y_hat,
            extra_reconstructions=extra,
            rate_scale=beta_scale,
            image_weight=None if beta_scale is None else self.image_weight(beta_scale),
        )

    def _decode_means(self, d: torch.Tensor, lowest: int) -> torch.Tensor:
        """x_hat from the state after level ``lowest``, every level below at its prior mean."""
        td = self.top_down
        for level in reversed(range(lowest)):
            c, _, means = td.prior_params(level, d)
            if level:
                d = td.combine(level, c, means)
        return (self.g_s(means) + 1) / 2

    def build_discriminator(self) -> nn.Module:
        return MultiScalePatchDiscriminator(self.config.M, self.config.disc_channels, self.L)

    # ---- starting from the β family ----------------------------------------------------------

    # β key prefix -> ours, for three levels: h_a and h_s split at 1/32, where the middle level joins
    BETA_KEYS = {
        "h_a.0.": "down.0.0.",
        "h_a.2.": "down.0.2.",
        "h_a.4.": "down.1.1.",
        "h_s.0.": "top_down.up.1.0.",
        "h_s.2.": "top_down.up.0.0.",
        "h_s.4.": "top_down.prior.0.",
    }

    def adopt_weights(self, family: str, config: dict, state: dict, path) -> dict:
        """A β checkpoint's weights under our names (g_a, g_s, hyper-transforms, entropy models and
        gains): the finest level is the β latent, so a three-level model starts from all of them."""
        if family != "beta_vae_gan":
            return super().adopt_weights(family, config, state, path)
        c = self.config
        want = {"N": c.N, "M": c.M, "rate_levels": c.rate_levels, "rate_span": c.rate_span}
        have = {key: config.get(key, want[key]) for key in want}
        if c.num_hierarchies != 3 or have != want or config.get("gain", "channel") != "channel":
            raise CheckpointError(
                f"{path}: a β checkpoint starts a hierarchical model with --num_hierarchies 3 and the same "
                f"N, M, rate_levels, rate_span (β: {have}, channel gains; flags: {want}, "
                f"{c.num_hierarchies} levels)"
            )
        if config.get("context", "none") != "none":
            raise CheckpointError(
                f"{path}: this β model codes y with a {config['context']} context, which the hierarchical "
                "model has no place for; start from a β checkpoint without one (--context none)"
            )
        out = {}
        for key, value in state.items():
            if key.startswith("realism_decoder."):
                continue  # decode-only: it fits the β decoder alone
            new = next((ours + key[len(b) :] for b, ours in self.BETA_KEYS.items() if key.startswith(b)), key)
            out[new] = value
        return out

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
        sizes = self.latent_sizes(size)
        n = max((sizes[level][0] * sizes[level][1] for level in self.attended), default=0)
        return super().memory_bytes(size) + self.config.attention_heads * n * n * 8

    def _coding_gains(self, quality: float | None) -> list | None:
        return None if quality is None else self.coding_gains(self._gain_tables(), quality)

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> Compressed:
        """The quality (variable rate), then one stream per level, top level first; only the top k
        when the view (``with_levels``) says so."""
        return self.encode_latents(x)[0]

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> tuple[Compressed, list]:
        """(file streams, the quantized latents the decoder will see, top level first)."""
        k = self.coded_layers()
        size = tuple(x.shape[-2:])
        feats = [
            f.double().cpu() for f in self._features(self.g_a(pad_to_multiple(x, self.pad_multiple) * 2 - 1))
        ]
        quality = self._quality() if self.config.rate_levels else None
        gains = self._coding_gains(quality)
        td, top = self._coding_top_down(), self.L - 1
        hg, ihg = self._level_gains(gains, top)
        stream, z_g = self.entropy_bottleneck.compress(feats[top] * hg)
        streams = ([] if quality is None else [self.quality_stream(quality)]) + [stream]
        latents = [z_g * ihg]
        d = td.top_in(latents[0])
        for level in reversed(range(self.L - k, top)):
            c, scales, means = td.prior_params(level, d)
            g, ig = self._level_gains(gains, level)
            latent = feats[0] if level == 0 else td.posterior(level, feats[level], c)
            stream, v_g = self.gaussian_conditional.compress(latent * g, scales * g, means * g)
            streams.append(stream)
            latents.append(v_g * ig)
            if level:
                d = td.combine(level, c, latents[-1])
        return Compressed(streams=streams, size=size), latents

    @torch.no_grad()
    def decode_latents(self, compressed: Compressed) -> list[torch.Tensor]:
        """The decoded latents, top level first (prior means for the levels not in the file); the
        last is y_hat, what g_s reads."""
        quality = self.file_quality(compressed)
        levels = self.level_streams(compressed)
        k = len(levels)
        if not 1 <= k <= self.L:
            raise CorruptFileError(f"file holds {k} levels; this model has {self.L}")
        gains = self._coding_gains(quality)
        sizes = self.latent_sizes(compressed.size)
        td, top = self._coding_top_down(), self.L - 1
        _, ihg = self._level_gains(gains, top)
        latents = [self.entropy_bottleneck.decompress(levels[0], (1, self.config.N, *sizes[top])) * ihg]
        d = td.top_in(latents[0])
        for i, level in enumerate(reversed(range(top)), start=1):
            c, scales, means = td.prior_params(level, d)
            if i < k:
                g, ig = self._level_gains(gains, level)
                latents.append(self.gaussian_conditional.decompress(levels[i], scales * g, means * g) * ig)
            else:
                latents.append(means)  # not in the file: the prior mean
            if level:
                d = td.combine(level, c, latents[-1])
        return latents

    @torch.no_grad()
    def decompress(self, compressed: Compressed) -> torch.Tensor:
        """Decode the levels present (a prefix from the top); the rest take their prior means."""
        y_hat = self.decode_latents(compressed)[-1]
        param = next(self.g_s.parameters())
        x_hat = (self.g_s(y_hat.to(param.device, param.dtype)) + 1) / 2
        return x_hat[..., : compressed.size[0], : compressed.size[1]].clamp(0, 1)
