"""VQ-VAE-GAN: a learned residual codebook whose indices are entropy-coded into real files.

Follows VQ-VAE (van den Oord et al. 2017, "Neural discrete representation learning") with EMA
codebooks, VQGAN's PatchGAN critic and adaptive adversarial weight (Esser et al. 2021, "Taming
transformers for high-resolution image synthesis"), and residual VQ with quantizer dropout
(Zeghidour et al. 2021, "SoundStream")::

    x --g_a--> y --[VQ stage 0]--> i_0 --+--[VQ stage 1 on y - e_0(i_0)]--> i_1 -- ... --> i_{S-1}
                                         |                       |
    p_0(i_0 | its left neighbour)        |   p_1(i_1 | i_0)  (one row per i_0)   ...   (range coder)
                                         v                       v
    y_hat = e_0(i_0) + e_1(i_1) + ... (first k stages) --g_s--> x_hat        D(x or x_hat) -> patch logits

``with_stages(k).compress(x)`` writes only the first k stages (one stream each), so one checkpoint
gives several rates. The priors learn from the detached indices: the rate in the loss is their real
cross-entropy in bits, and ``--beta`` only fits them (it does not push the encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from common.bitstream import MAX_STREAMS, Compressed
from common.cli import option
from common.contract import CompressionModel, Discriminator, ModelOutput
from common.entropy import CategoricalPrior, LeftContextPrior
from common.errors import VAEGANError
from common.layers import PatchTrunk, ResidualBlock, conv, deconv, pad_to_multiple
from vq_vae_gan.quantizer import ResidualVQ


@dataclass(frozen=True)
class VQVAEGANConfig:
    num_embeddings: int = option(512, "codebook size K per stage")
    embedding_dim: int = option(64, "channels of the latent y and of each code")
    commitment_cost: float = option(0.25, "weight of the commitment loss ||y - sg(code)||²")
    num_quantizers: int = option(2, "residual stages; decoding the first k gives k rates from one model")
    downsample: int = option(16, "a power of two: the latent is H/downsample x W/downsample")
    channels: int = option(128, "channels inside the encoder and decoder")
    disc_channels: int = option(64, "width of the discriminator")
    ema_decay: float = option(0.99, "decay of the codebooks' exponential moving averages")
    dead_code_threshold: float = option(1.0, "codes used less than this per batch (EMA) are re-seeded")
    quantizer_dropout: float = option(0.5, "share of training images decoded from a random number of stages")
    adaptive_weight: bool = option(True, "VQGAN's gradient-norm balance of the adversarial term")
    stage0_context: str = option(
        "left", "prior of stage 0: one table row per left neighbour's index, or one table", ("left", "none")
    )

    def __post_init__(self):  # validated on creation
        _check(self)


class PatchDiscriminator(Discriminator):
    """Unconditional PatchGAN (Isola et al. 2017, as in VQGAN) with spectral normalisation."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.net = PatchTrunk(3, channels)

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Activations after each LeakyReLU, then the logits (last): for feature matching."""
        return self.net.features(x * 2 - 1)


def _check(config: VQVAEGANConfig) -> None:
    ds = config.downsample
    if ds < 2 or ds & (ds - 1):
        raise VAEGANError(f"--downsample must be a power of two >= 2, got {ds}")
    if not 1 <= config.num_quantizers <= MAX_STREAMS:
        raise VAEGANError(f"--num_quantizers must be between 1 and {MAX_STREAMS}")
    if config.num_embeddings < 2:
        raise VAEGANError("--num_embeddings must be at least 2")
    if not 0 <= config.ema_decay < 1:
        raise VAEGANError("--ema_decay must lie in [0, 1)")
    if config.stage0_context not in ("left", "none"):
        raise VAEGANError(f"--stage0_context must be 'left' or 'none', got {config.stage0_context!r}")


class VQVAEGAN(CompressionModel):
    family = "vq_vae_gan"
    layer_name = "stages"
    Config = VQVAEGANConfig

    def __init__(self, config: VQVAEGANConfig):
        super().__init__(config)
        self.pad_multiple = config.downsample
        C, D, K = config.channels, config.embedding_dim, config.num_embeddings
        levels = int(math.log2(config.downsample))

        def act():
            return nn.LeakyReLU(0.2)

        # The first and last layers change resolution at once (as in Balle's transforms): residual
        # blocks at full resolution would cost most of the compute for little gain.
        down = [m for _ in range(levels - 1) for m in (act(), ResidualBlock(C), conv(C, C))]
        up = [m for _ in range(levels - 1) for m in (deconv(C, C), act(), ResidualBlock(C))]
        self.g_a = nn.Sequential(conv(3, C), *down, act(), ResidualBlock(C), nn.Conv2d(C, D, 1))
        self.g_s = nn.Sequential(nn.Conv2d(D, C, 3, padding=1), ResidualBlock(C), *up, act(), deconv(C, 3))
        self.quantizer = ResidualVQ(
            config.num_quantizers,
            K,
            D,
            decay=config.ema_decay,
            dead_code_threshold=config.dead_code_threshold,
        )
        # Stage 0: one row per index of its left neighbour (or one categorical); stage s > 0: one row
        # per index of stage s - 1 at the same place.
        first = LeftContextPrior(K) if config.stage0_context == "left" else CategoricalPrior(K, 1)
        self.priors = nn.ModuleList(
            [first] + [CategoricalPrior(K, K) for _ in range(1, config.num_quantizers)]
        )
        self.register_buffer("usage", torch.zeros(config.num_quantizers, K), persistent=False)

    # ---- rate control -------------------------------------------------------------------------

    def layer_count(self) -> int:
        """Each residual stage is a layer: the first k stages' streams decode on their own."""
        return self.config.num_quantizers

    def rate_points(self) -> list[tuple[VQVAEGAN, str]]:
        """One view per number of residual stages decoded (``-stages<k>``, as ``evaluate.py --stages``)."""
        return [(self.with_stages(k), f"-stages{k}") for k in range(1, self.config.num_quantizers + 1)]

    def transform_width(self) -> int:
        return self.config.channels

    def with_stages(self, k: int) -> VQVAEGAN:
        """VQ's name for :meth:`with_layers`: evaluation forward and ``compress`` use the first k stages."""
        return self.with_layers(k)

    # ---- training -----------------------------------------------------------------------------

    def index_likelihoods(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """(k, B, h, w) -> {"s0": (B, 1, h, w), ...}: each stage's indices under its prior."""
        return {
            f"s{s}": self.priors[s](indices[s], indices[s - 1] if s else None).unsqueeze(1)
            for s in range(len(indices))
        }

    def _keep(self, batch: int, device) -> torch.Tensor | None:
        """Quantizer dropout: some images are reconstructed from a random number of first stages."""
        p, S = self.config.quantizer_dropout, self.config.num_quantizers
        if not self.training or p <= 0 or S == 1:
            return None
        drop = torch.rand(batch, device=device) < p
        k = torch.randint(1, S + 1, (batch,), device=device)
        return torch.where(drop, k, torch.full_like(k, S))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        y = self.g_a(x * 2 - 1)
        k = self.config.num_quantizers if self.training else self.coded_layers()
        y_hat, indices, commitment = self.quantizer(y, k, self._keep(x.shape[0], x.device))
        if self.training:
            self.usage.zero_()
        else:
            for s in range(k):
                self.usage[s] += torch.bincount(indices[s].reshape(-1), minlength=self.usage.shape[1])
        x_hat = (self.g_s(y_hat) + 1) / 2
        return ModelOutput(
            x_hat=x_hat,
            likelihoods=self.index_likelihoods(indices),
            cond=None,
            extra_losses={"vq_commitment": self.config.commitment_cost * commitment},
        )

    def validation_stats(self) -> dict[str, float]:
        """Codebook usage and perplexity per stage over every evaluation forward since the last call."""
        stats = {}
        for s, counts in enumerate(self.usage):
            total = float(counts.sum())
            p = counts / max(total, 1.0)
            entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
            stats[f"codebook_usage_s{s}"] = float((counts > 0).float().mean())
            stats[f"perplexity_s{s}"] = math.exp(entropy) if total else 0.0
        self.usage.zero_()
        return stats

    def adaptive_weight_layer(self) -> torch.Tensor | None:
        """The decoder's last layer, where VQGAN's adaptive weight compares gradient norms (if asked for)."""
        return self.g_s[-1].weight if self.config.adaptive_weight else None

    def build_discriminator(self) -> nn.Module:
        return PatchDiscriminator(self.config.disc_channels)

    # ---- coding -------------------------------------------------------------------------------

    def latent_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return tuple(math.ceil(n / self.config.downsample) for n in size)

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> Compressed:
        """One stream per stage: stage 0 with its marginal, stage s with the row of index s-1."""
        k = self.coded_layers()
        size = tuple(x.shape[-2:])
        y = self.g_a(pad_to_multiple(x, self.pad_multiple) * 2 - 1)
        indices = self.quantizer.indices(y, k)
        streams = [self.priors[s].compress(indices[s], indices[s - 1] if s else None) for s in range(k)]
        return Compressed(streams=streams, size=size)

    @torch.no_grad()
    def decompress_indices(self, compressed: Compressed) -> torch.Tensor:
        """Compressed -> (k, 1, h, w) indices; k is the number of streams."""
        k = len(compressed.streams)
        if not 1 <= k <= self.config.num_quantizers:
            raise ValueError(f"file holds {k} stages; this model has {self.config.num_quantizers}")
        shape = (1, *self.latent_size(compressed.size))
        indices: list[torch.Tensor] = []
        for s, data in enumerate(compressed.streams):
            indices.append(self.priors[s].decompress(data, shape, indices[s - 1] if s else None))
        return torch.stack(indices)

    @torch.no_grad()
    def decompress(self, compressed: Compressed) -> torch.Tensor:
        h, w = compressed.size
        device = self.quantizer.stages[0].embed.device
        y_hat = self.quantizer.codes(self.decompress_indices(compressed).to(device))
        x_hat = (self.g_s(y_hat) + 1) / 2
        return x_hat[..., :h, :w].clamp(0, 1)
