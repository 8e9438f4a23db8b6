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

Variable rate (``--rate_levels R``, gain units of Cui et al. 2021): one network serves every rate.
Quality q in [1, R] picks gain vectors g(q), g'(q), interpolated log-linearly between R learned
anchors; the encoder codes round(g * y) under the prior N(g * mu, g * sigma) (the hyper-decoder's
parameters of y, scaled: exact for a Gaussian), and the decoder synthesises from g' * y_hat; the
hyper-latent z has gains of its own, so its bits fall with the rate too. In
training every image draws its own q and its rate term is weighted by beta * span^(1/2 - t),
t = (q - 1) / (R - 1): low q trades bits for distortion like a large beta. The file carries q
(a 2-byte stream, in thousandths) so the decoder needs nothing but the file. ``--gain scalar``
learns one step per anchor instead of one per channel (QVRF-like, Tong et al. 2023).

Spatial context (``--context checkerboard``, He et al. 2021): y is coded in two passes, first the
anchors (half the positions, a checkerboard) under the hyperprior's (mu, sigma), then the rest under
(mu, sigma) refined from the decoded anchors around them; the file holds the two halves as two
streams. It starts as the hyperprior alone, so ``--init_from`` a trained model with
``--train_part context`` (then ``entropy``) trains it and leaves the decoder as it was.

Decode-time realism (``--realism``, after Agustsson et al. 2023, "Multi-realism image compression
with a conditional generator"): residual blocks added to g_s at each of its scales, each modulated
by the realism weight w in [0, 1] (Fourier features -> MLP -> FiLM and a gate) and scaled by w, so
w = 0 *is* the base decoder, bit for bit. They train for ``lambda_d * MSE + w * (lambda_p * LPIPS +
lambda_adv * GAN)``, w drawn per image, with the encoder, the entropy model and g_s frozen (as
MS-ILLM trains its GAN stage): the files do not change, so one file decodes anywhere from faithful
(w = 0, the codec's default) to realistic (w = 1), and files of the base model decode too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from common.bitstream import Compressed
from common.cli import option
from common.contract import CompressionModel, Discriminator, ModelOutput
from common.entropy import CheckerboardContext, EntropyBottleneck, GaussianConditional, checkerboard
from common.errors import CorruptFileError
from common.layers import (
    ConditionedResidual,
    FourierFeatures,
    PatchTrunk,
    conv,
    deconv,
    gdn_analysis,
    gdn_synthesis,
    pad_to_multiple,
)
from common.variable_rate import VariableRate, VariableRateConfig, anchor_log_gains


@dataclass(frozen=True)
class BetaVAEGANConfig(VariableRateConfig):
    N: int = option(128, "channels inside the transforms")
    M: int = option(
        192, "channels of the latent y (more than --init_from's: its latent is widened, decoding as before)"
    )
    disc_channels: int = option(64, "width of the discriminator")
    gain: str = option(
        "channel", "variable rate: one gain per latent channel, or one scalar step", ("channel", "scalar")
    )
    realism: bool = option(
        False,
        "add a realism-conditioned decoder (decode with --realism 0..1); it trains alone, with the "
        "encoder, entropy model and base decoder frozen: start from a β checkpoint with --init_from",
    )
    context: str = option(
        "none",
        "spatial context of y's prior: none (the hyperprior alone) or checkerboard (two passes, He et "
        "al. 2021: half of y is coded with what the other half tells)",
        ("none", "checkerboard"),
    )
    train_part: str = option(
        "all",
        "what trains: all; entropy (h_a, h_s, priors, context, z gains; g_a, g_s and y's gains frozen, so "
        "the decoder stays as it is); context (the checkerboard context alone). The last two start from a "
        "trained model (--init_from)",
        ("all", "entropy", "context"),
    )

    def __post_init__(self):
        super().__post_init__()
        if self.gain not in ("channel", "scalar"):
            raise ValueError(f"gain must be 'channel' or 'scalar', not {self.gain!r}")
        if self.context not in ("none", "checkerboard"):
            raise ValueError(f"context must be 'none' or 'checkerboard', not {self.context!r}")
        if self.train_part not in ("all", "entropy", "context"):
            raise ValueError(f"train_part must be all, entropy or context, not {self.train_part!r}")
        if self.train_part == "context" and self.context == "none":
            raise ValueError("--train_part context needs a context: add --context checkerboard")


class ConditionalPatchDiscriminator(Discriminator):
    """PatchGAN on the image, conditioned on the upsampled quantized latent (as in HiFiC)."""

    def __init__(self, latent_channels: int, channels: int = 64, upsample: int = 16):
        super().__init__()
        self.cond = nn.Sequential(
            nn.Conv2d(latent_channels, 12, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=upsample, mode="nearest"),
        )
        self.net = PatchTrunk(3 + 12, channels)

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Activations after each LeakyReLU of the trunk, then the logits (last): for feature matching."""
        c = self.cond(cond)[..., : x.shape[-2], : x.shape[-1]]
        return self.net.features(torch.cat([x * 2 - 1, c], dim=1))


class RealismDecoder(nn.Module):
    """Residual blocks around g_s: one on y_hat (1/16), one after each inverse GDN (1/8, 1/4) and two
    at 1/2 resolution, where texture is made; each reads the realism w through one shared embedding.
    g_s itself is not changed, so w = 0 (every block returns its input) is the base decoder."""

    def __init__(self, M: int, N: int, embed_dim: int = 64):
        super().__init__()
        self.features = FourierFeatures(8)
        self.embed = nn.Sequential(
            nn.Linear(self.features.dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim), nn.SiLU()
        )
        self.on_latent = ConditionedResidual(M, embed_dim)
        # after g_s[1], g_s[3], g_s[5] (its inverse GDNs)
        self.on_features = nn.ModuleList(
            nn.ModuleList(ConditionedResidual(N, embed_dim) for _ in range(n)) for n in (1, 1, 2)
        )

    def forward(self, g_s: nn.Sequential, y_hat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        e = self.embed(self.features(w))
        h = self.on_latent(y_hat, e, w)
        for i, layer in enumerate(g_s):
            h = layer(h)
            if i in (1, 3, 5):
                for block in self.on_features[i // 2]:
                    h = block(h, e, w)
        return h


class BetaVAEGAN(VariableRate, CompressionModel):
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
        R = config.rate_levels
        if R:
            log_gain = anchor_log_gains(R, config.rate_span)
            width, hyper_width = (M, N) if config.gain == "channel" else (1, 1)
            self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, width))
            self.log_inverse_gain = nn.Parameter(-log_gain[:, None].repeat(1, width))
            # z gets its own gains (start at 1): its bits would otherwise be the same at every rate
            self.log_hyper_gain = nn.Parameter(torch.zeros(R, hyper_width))
            self.log_hyper_inverse_gain = nn.Parameter(torch.zeros(R, hyper_width))
        if config.realism:
            self.realism_decoder = RealismDecoder(M, N)
        if config.context == "checkerboard":
            self.context_model = CheckerboardContext(M)
        self.quality: float | None = None  # runtime setting (see at_quality); not in the weights
        self.realism: float | None = None  # runtime setting (see at_realism); not in the weights

    # ---- realism ------------------------------------------------------------------------------

    def at_realism(self, realism: float) -> BetaVAEGAN:
        """A view decoding at realism ``realism`` (0 = faithful, 1 = realistic); files are the same."""
        if not self.config.realism:
            raise ValueError("this model has no realism decoder: it decodes at one realism (0)")
        if not 0 <= realism <= 1:
            raise ValueError(f"realism must be between 0 and 1, not {realism:g}")
        return self.view(realism=float(realism))

    def decode_variants(self) -> list[tuple[BetaVAEGAN, str]]:
        """With a realism decoder: the default (faithful) decode and the realistic end, each a curve."""
        if not self.config.realism:
            return [(self, "")]
        return [(self, ""), (self.at_realism(1.0), "-realism1")]

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.config.realism:  # fine-tuning the realism decoder alone keeps the files as they are
            return list(self.realism_decoder.parameters())
        if self.config.train_part == "context":
            return list(self.context_model.parameters())
        if self.config.train_part == "entropy":  # the entropy model alone: the decoder stays as it is
            frozen = ("g_a.", "g_s.", "log_gain", "log_inverse_gain")
            return [p for k, p in self.named_parameters() if not k.startswith(frozen)]
        return list(self.parameters())

    def coding_state(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        return {k: v for k, v in state.items() if not k.startswith("realism_decoder.")}

    def decoding_state(self) -> dict[str, torch.Tensor]:
        return self.state_dict() if self.config.realism and self.realism else self.coding_state()

    def train(self, mode: bool = True) -> BetaVAEGAN:
        """With a realism decoder the frozen parts run as they code (rounded latents) in training too."""
        super().train(mode)
        if self.config.realism:
            for module in (
                self.g_a,
                self.h_a,
                self.h_s,
                self.g_s,
                self.entropy_bottleneck,
                self.gaussian_conditional,
            ):
                module.eval()
        return self

    def _y_prior(self, y_g, scales, means, g=1.0, ig=1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods) of y (times its gain g) under the Gaussian prior; with a checkerboard
        context in two passes: the anchors' y_hat (times ig, as the decoder sees it) refine the others'
        (sigma, mu). Training sees the rounded anchors, as the decoder does."""
        if self.config.context == "none":
            return self.gaussian_conditional(y_g, scales * g, means * g)
        anchors_hat, _ = self.gaussian_conditional(y_g, scales * g, means * g)
        scales, means = self.context_model(anchors_hat * ig, scales, means)
        return self.gaussian_conditional(y_g, scales * g, means * g)

    def _synthesize(self, y_hat: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """x_hat in [0, 1]-ish from y_hat; ``w`` (B,) the realism per image, None or all 0: g_s alone."""
        if self.config.train_part != "all" and self.training:
            # the frozen decoder gives the entropy model no gradient: skip its backward pass
            y_hat = y_hat.detach()
        if w is None or not bool((w != 0).any()):
            return (self.g_s(y_hat) + 1) / 2
        return (self.realism_decoder(self.g_s, y_hat, w) + 1) / 2

    def _forward_realism(self, n: int, device) -> torch.Tensor | None:
        """Training: each image its own realism, uniform on [0, 1]; evaluation: the view's (0, as
        ``decompress``, when none was chosen)."""
        if not self.config.realism:
            return None
        if self.training:
            return torch.rand(n, device=device)
        return torch.full((n,), float(self.realism or 0.0), device=device)

    def validation_views(self) -> list[BetaVAEGAN]:
        """With a realism decoder, validation scores the realistic end: the only part that trains."""
        views = super().validation_views()
        return [view.at_realism(1.0) for view in views] if self.config.realism else views

    def _disc_condition(self, y_hat: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """The discriminator sees y_hat and, with a realism decoder, w as one more channel."""
        if w is None:
            return y_hat
        return torch.cat([y_hat, w[:, None, None, None].expand(-1, 1, *y_hat.shape[-2:])], dim=1)

    # ---- widening -----------------------------------------------------------------------------

    def widened(self, M: int) -> BetaVAEGAN:
        """This model with a latent of M channels (more than it has) that reconstructs, and codes its
        old channels, exactly as it does: the transforms' ceiling at high rates is set by y's width
        (``scripts/rate_ceiling.py``), so training goes on from here rather than from scratch.

        The new channels start as fresh features of g_a at a hundredth of their initial size, so they
        round to 0 and the files, and what they decode to, stay as they were; g_s reads them through
        freshly initialised weights (rounding passes its gradient straight through, so g_a learns to
        raise them where they help); every other weight from a new channel into an old output is 0
        (h_a, h_s, the context); the hyperprior predicts them with zero weights (mean 0, the smallest
        scale); their gains start at each anchor's mean. The discriminator starts afresh."""
        old = self.config.M
        if self.config.realism:
            raise ValueError("widen the base model, then train its realism decoder again")
        if M <= old:
            raise ValueError(f"M must be larger than the model's {old}, not {M}")
        wide = type(self)(replace(self.config, M=M))
        h_old = old * 3 // 2
        keep = {  # each kind of dimension: where the old channels sit among the new
            "M": list(range(old)),
            "SM": list(range(old)) + list(range(M, M + old)),  # [scales | means]
            "H": list(range(h_old)),  # h_s's hidden width, 3M/2
            "C2": list(range(2 * old)),  # the context's features
            "C3": list(range(3 * old)),  # the context's hidden width
        }
        keep["R"] = keep["SM"] + [2 * M + i for i in range(2 * old)]  # [scales | means | features]
        # name -> (kind of dim 0, kind of dim 1); transposed convolutions are (in, out, ...)
        layout = {
            "g_a.6": ("M", None),
            "g_s.0": ("M", None),
            "h_a.0": (None, "M"),
            "h_s.0": (None, "M"),
            "h_s.2": ("M", "H"),
            "h_s.4": ("SM", "H"),
            "context_model.context": ("C2", "M"),
            "context_model.refine.0": ("C3", "R"),
            "context_model.refine.2": ("SM", "C3"),
        }
        transposed = {"g_s.0", "h_s.0", "h_s.2"}
        state, new_state = self.state_dict(), wide.state_dict()
        with torch.no_grad():
            for name, target in new_state.items():
                source = state[name]
                if source.shape == target.shape:
                    target.copy_(source)
                    continue
                if ".tables." in name:  # coding tables: rebuilt below
                    continue
                if name in ("log_gain", "log_inverse_gain"):
                    target.copy_(source.mean(dim=1, keepdim=True).expand_as(target))
                    target[:, :old] = source
                    continue
                layer, kind = name.rsplit(".", 1)
                dims = layout[layer]
                if kind == "bias":
                    index = keep[dims[1] if layer in transposed else dims[0]]
                    target[index] = source
                    continue
                out_dim, in_dim = (1, 0) if layer in transposed else (0, 1)
                out_kind, in_kind = dims[out_dim], dims[in_dim]
                out_index = keep[out_kind] if out_kind else list(range(target.shape[out_dim]))
                in_index = keep[in_kind] if in_kind else list(range(target.shape[in_dim]))
                view = target if out_dim == 0 else target.transpose(0, 1)  # (out, in, ...)
                src = source if out_dim == 0 else source.transpose(0, 1)
                if in_kind and layer != "g_s.0":  # nothing new reaches an old output
                    view[out_index] = 0
                view[torch.tensor(out_index)[:, None], torch.tensor(in_index)[None, :]] = src
            # the hyperprior's and the context's outputs for the new channels: no refinement, mean 0,
            # scale 0 (the coder's smallest): a 0 costs next to no bits
            new_out = sorted(set(range(2 * M)) - set(keep["SM"]))
            for layer in ("h_s.4", "context_model.refine.2"):
                if layer + ".weight" not in new_state:
                    continue
                new_state[layer + ".weight"][new_out] = 0
                new_state[layer + ".bias"][new_out] = 0
            # and the new features start too small to survive rounding: the files keep their size
            new_state["g_a.6.weight"][old:] *= 0.01
            new_state["g_a.6.bias"][old:] = 0
        wide.load_state_dict(new_state)
        wide.update()
        return wide.train(self.training)

    # ---- rate ---------------------------------------------------------------------------------

    def _gains(self, q: torch.Tensor, dtype=None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """[gain, inverse gain, hyper gain, inverse hyper gain] at qualities ``q``, and the β multiplier."""
        return self.interpolate_gains(self._gain_tables(), q, dtype)

    def _gain_tables(self) -> list[torch.Tensor]:
        return [self.log_gain, self.log_inverse_gain, self.log_hyper_gain, self.log_hyper_inverse_gain]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        y = self.g_a(x * 2 - 1)
        z = self.h_a(y)
        w = self._forward_realism(x.shape[0], x.device)
        if not self.config.rate_levels:
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            scales, means = self.h_s(z_hat).chunk(2, dim=1)
            y_hat, y_likelihoods = self._y_prior(y, scales, means)
            return ModelOutput(
                x_hat=self._synthesize(y_hat, w),
                likelihoods={"y": y_likelihoods, "z": z_likelihoods},
                cond=self._disc_condition(y_hat, w),
                realism=w,
            )
        (g, ig, hg, ihg), beta_scale = self._gains(self.forward_qualities(x.shape[0], x.device))
        z_hat_g, z_likelihoods = self.entropy_bottleneck(z * hg)
        scales, means = self.h_s(z_hat_g * ihg).chunk(2, dim=1)
        y_hat_g, y_likelihoods = self._y_prior(y * g, scales, means, g, ig)
        y_hat = y_hat_g * ig
        return ModelOutput(
            x_hat=self._synthesize(y_hat, w),
            likelihoods={"y": y_likelihoods, "z": z_likelihoods},
            cond=self._disc_condition(y_hat, w),
            rate_scale=beta_scale,
            image_weight=self.image_weight(beta_scale),
            realism=w,
        )

    def build_discriminator(self) -> nn.Module:
        cond_channels = self.config.M + (1 if self.config.realism else 0)
        return ConditionalPatchDiscriminator(cond_channels, self.config.disc_channels)

    # ---- coding -------------------------------------------------------------------------------

    def _entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_s in float64 on CPU: both sides must pick identical scale-table indexes."""
        h_s = copy.deepcopy(self.h_s).double().cpu()
        with torch.no_grad():
            scales, means = h_s(z_hat.double().cpu()).chunk(2, dim=1)
        return scales, means

    def _code_y(self, y_g: torch.Tensor, scales, means, g=1.0, ig=1.0) -> tuple[list[bytes], torch.Tensor]:
        """y (float64, times its gain g) as streams: one, or with a context the anchors then the rest."""
        if self.config.context == "none":
            y_string, y_hat_g = self.gaussian_conditional.compress(y_g, scales * g, means * g)
            return [y_string], y_hat_g
        anchor = checkerboard(*y_g.shape[-2:])
        s, m = scales * g, means * g
        a_string, a_hat = self.gaussian_conditional.compress(y_g[..., anchor], s[..., anchor], m[..., anchor])
        y_hat_g = torch.zeros_like(y_g)
        y_hat_g[..., anchor] = a_hat
        with torch.no_grad():
            scales, means = self.context_model.coding_copy()(y_hat_g * ig, scales, means)
        s, m = scales * g, means * g
        rest = ~anchor
        r_string, r_hat = self.gaussian_conditional.compress(y_g[..., rest], s[..., rest], m[..., rest])
        y_hat_g[..., rest] = r_hat
        return [a_string, r_string], y_hat_g

    def _decode_y(self, strings: list[bytes], scales, means, g=1.0, ig=1.0) -> torch.Tensor:
        """The inverse of :meth:`_code_y`: y_hat times its gain, float64 on the CPU, shaped as ``scales``."""
        if self.config.context == "none":
            return self.gaussian_conditional.decompress(strings[0], scales * g, means * g)
        anchor = checkerboard(*scales.shape[-2:])
        s, m = scales * g, means * g
        y_hat_g = torch.zeros(s.shape, dtype=torch.float64)
        y_hat_g[..., anchor] = self.gaussian_conditional.decompress(
            strings[0], s[..., anchor], m[..., anchor]
        )
        with torch.no_grad():
            scales, means = self.context_model.coding_copy()(y_hat_g * ig, scales, means)
        s, m = scales * g, means * g
        rest = ~anchor
        y_hat_g[..., rest] = self.gaussian_conditional.decompress(strings[1], s[..., rest], m[..., rest])
        return y_hat_g

    @property
    def y_streams(self) -> int:
        return 1 if self.config.context == "none" else 2

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> Compressed:
        size = tuple(x.shape[-2:])
        y = self.g_a(pad_to_multiple(x, self.pad_multiple) * 2 - 1)
        z = self.h_a(y)
        if not self.config.rate_levels:
            z_string, z_hat = self.entropy_bottleneck.compress(z)
            scales, means = self._entropy_parameters(z_hat)
            y_strings, _ = self._code_y(y.double().cpu(), scales, means)
            return Compressed(streams=[*y_strings, z_string], size=size)
        quality = self._quality()
        g, ig, hg, ihg = self.coding_gains(self._gain_tables(), quality)
        z_string, z_hat_g = self.entropy_bottleneck.compress(z.double().cpu() * hg)
        scales, means = self._entropy_parameters(z_hat_g * ihg)
        y_strings, _ = self._code_y(y.double().cpu() * g, scales, means, g, ig)
        return Compressed(streams=[self.quality_stream(quality), *y_strings, z_string], size=size)

    def file_quality(self, compressed: Compressed) -> float | None:
        """The quality a variable-rate file was written at (None for a fixed-rate model's file)."""
        if not self.config.rate_levels:
            return None
        return self.read_quality(
            compressed.streams[0] if len(compressed.streams) == self.y_streams + 2 else b""
        )

    @torch.no_grad()
    def decompress(self, compressed: Compressed) -> torch.Tensor:
        h, w = compressed.size
        zh, zw = math.ceil(h / self.pad_multiple), math.ceil(w / self.pad_multiple)  # z is 1/pad_multiple
        quality = self.file_quality(compressed)
        streams = compressed.streams[1:] if quality is not None else compressed.streams
        if len(streams) != self.y_streams + 1:
            raise CorruptFileError(f"file is damaged (it holds {len(compressed.streams)} streams)")
        *y_strings, z_string = streams
        z_hat = self.entropy_bottleneck.decompress(z_string, (1, self.config.N, zh, zw))
        if quality is None:
            scales, means = self._entropy_parameters(z_hat)
            y_hat = self._decode_y(y_strings, scales, means)
        else:
            g, ig, _, ihg = self.coding_gains(self._gain_tables(), quality)
            scales, means = self._entropy_parameters(z_hat * ihg)
            y_hat = self._decode_y(y_strings, scales, means, g, ig) * ig
        param = next(self.g_s.parameters())
        y_hat = y_hat.to(param.device, param.dtype)
        realism = None if not self.realism else torch.full((1,), float(self.realism), device=param.device)
        x_hat = self._synthesize(y_hat, realism)
        return x_hat[..., :h, :w].clamp(0, 1)
