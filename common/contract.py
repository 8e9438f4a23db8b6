"""The contract every family's model fulfils, so common code never branches on the family.

* ``forward(x)`` (training) -> :class:`ModelOutput`: reconstruction, likelihoods per latent (their
  ``-log2`` summed is the rate in bits), an optional conditioning tensor for the discriminator, and
  extra loss terms the family needs (e.g. VQ commitment), and extra reconstructions whose weighted
  distortion the loop adds (e.g. the hierarchical decode from its top levels only).
* ``compress(x)`` -> :class:`common.bitstream.Compressed` (byte streams + original size);
  ``decompress(compressed)`` -> image, exactly the inverse. Padding happens inside the model.
* ``update()`` builds the integer tables coding needs; ``build_discriminator()`` the family's critic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from common.bitstream import Compressed
from common.checkpoint import model_id, state_digest
from common.entropy import EntropyModel
from common.errors import CheckpointError


@dataclass
class ModelOutput:
    x_hat: torch.Tensor
    likelihoods: dict[str, torch.Tensor]
    cond: torch.Tensor | None = None
    extra_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    # name -> (another reconstruction of x, its weight relative to the main distortion term)
    extra_reconstructions: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)
    # per-image multiplier of beta, shape (B,): a variable-rate model trains each image for its own rate
    rate_scale: torch.Tensor | None = None
    # per-image weight of its distortion and rate terms, shape (B,): balances the rates in one batch
    image_weight: torch.Tensor | None = None
    # per-image weight of the perceptual and adversarial terms, shape (B,): a realism-conditioned
    # decoder trains each image at its own realism (None: weight 1 for every image)
    realism: torch.Tensor | None = None


class Discriminator(nn.Module):
    """A family's critic (``build_discriminator``): ``features(x, cond)`` gives the activations the
    feature-matching loss compares, then the logits (last); ``forward`` gives the logits."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.features(x, cond)[-1]

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract


class BatchStatistics(nn.Module):
    """A module that learns from batch statistics outside the gradient (e.g. EMA codebooks).

    The training forward only records what it saw (``pending``); the loop applies it with
    :meth:`apply` once the step is taken, or drops it with :meth:`discard` when the step is skipped
    (a non-finite loss), so a skipped step changes nothing. ``gather`` (data-parallel training)
    concatenates a tensor over ranks, so every rank applies the same update."""

    def __init__(self):
        super().__init__()
        self.pending: tuple[torch.Tensor, ...] | None = None

    def apply(self, gather=None) -> None:
        if self.pending is not None:
            stats = self.pending if gather is None else tuple(gather(t) for t in self.pending)
            self.pending = None
            self.update_from(*stats)

    def discard(self) -> None:
        self.pending = None

    def update_from(self, *stats: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class CompressionModel(nn.Module):
    """Base class: subclasses set ``family``, ``Config`` and ``pad_multiple``."""

    family: str = ""
    Config: type = object
    pad_multiple: int = 64
    # what the family calls its layers in messages (VQ: stages, hierarchical: levels)
    layer_name: str = "layers"
    # a variable-rate file stores its quality in steps of 1 / quality_scale (the codec searches on them)
    quality_scale: int = 1000

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.checkpoint_path: str | None = None
        self._view_settings: dict = {}
        self.coding_layers: int | None = None  # runtime setting (see with_layers); not in the weights
        self._identity: bytes | None = None
        self._digest: str | None = None

    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def compress(self, x: torch.Tensor) -> Compressed:  # pragma: no cover - abstract
        raise NotImplementedError

    def decompress(self, compressed: Compressed) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_discriminator(self) -> Discriminator:  # pragma: no cover - abstract
        raise NotImplementedError

    def entropy_models(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, EntropyModel)]

    def update(self) -> None:
        for m in self.entropy_models():
            m.update()

    def ready_to_code(self) -> bool:
        return all(m.tables.ready for m in self.entropy_models())

    def view(self, **settings):
        """A shallow copy with some runtime settings changed (e.g. how many stages or levels to code).

        Parameters, buffers and submodules are the same objects, so the view has the same identity.
        """
        view = copy.copy(self)
        for name, value in settings.items():
            setattr(view, name, value)
        view._view_settings = {**self.view_settings(), **settings}
        return view

    def view_settings(self) -> dict:
        """The runtime settings this view changed (empty for the model itself): with the identity,
        what tells two rate points of one checkpoint apart (caches key on both)."""
        return dict(self._view_settings)

    # ---- layered files: the first k streams of a file decode on their own ---------------------

    def layer_count(self) -> int:
        """How many layers (streams that refine each other) a file of this model holds: VQ's residual
        stages, the hierarchical levels; 1 for a model whose streams only make sense together."""
        return 1

    def coded_layers(self) -> int:
        """How many layers this view writes and evaluates (all, unless :meth:`with_layers` said fewer)."""
        k = self.layer_count() if self.coding_layers is None else self.coding_layers
        if not 1 <= k <= self.layer_count():
            raise ValueError(f"this model has {self.layer_count()} {self.layer_name}; {k} requested")
        return k

    def with_layers(self, k: int) -> CompressionModel:
        """A view sharing these weights that codes (and evaluates) only the first k layers."""
        view = self.view(coding_layers=k)
        view.coded_layers()  # refuses a k outside 1..layer_count()
        return view

    def rate_points(self) -> list[tuple[CompressionModel, str]]:
        """(view, name suffix) for each rate one checkpoint offers, lowest first; most families: itself.

        A family that codes several rates with one set of weights (VQ's residual stages) returns a
        view per rate, so the codec (``--quality``) and the comparison reach every rate it ships."""
        return [(self, "")]

    # Peak bytes per padded pixel, per channel of the widest full-resolution transform: measured
    # on the shipped checkpoints (2048x2048, one thread, resident memory above the loaded model:
    # 200-268 bytes per pixel at 64 channels, results/benchmarks/cpu_memory_2048.json), rounded up.
    bytes_per_pixel_per_channel: float = 4.5

    def transform_width(self) -> int:
        """Channels of the widest transform near full resolution (what activation memory scales with)."""
        return 64

    def memory_bytes(self, size: tuple[int, int]) -> int:
        """Estimated peak memory of coding an image of ``size`` (activations, not weights).

        The codec refuses an image (encoder) or a file (decoder) whose estimate is over the memory
        budget before the network runs, so a 25-byte file declaring a huge image fails in one line
        instead of exhausting memory. Families whose memory grows faster than the pixel count
        (self-attention) add that term."""
        h, w = (-(-n // self.pad_multiple) * self.pad_multiple for n in size)
        return int(h * w * self.bytes_per_pixel_per_channel * self.transform_width())

    def quality_range(self) -> tuple[float, float] | None:
        """(lowest, highest) quality of a variable-rate model, chosen continuously; None: fixed rates."""
        return None

    def at_quality(self, quality: float) -> CompressionModel:
        """A view coding at ``quality`` (variable-rate models only)."""
        raise ValueError(f"this {self.family} model has no continuous quality to choose")

    def at_realism(self, realism: float) -> CompressionModel:
        """A view decoding at ``realism`` (0 = faithful, 1 = realistic): models with a realism decoder."""
        raise ValueError(f"this {self.family} model has no realism decoder: it decodes at one realism (0)")

    def decode_variants(self) -> list[tuple[CompressionModel, str]]:
        """(view, name suffix) per decode-time setting worth its own curve; most models: itself."""
        return [(self, "")]

    def apply_batch_statistics(self, gather=None) -> None:
        """After a step is taken: apply what :class:`BatchStatistics` modules recorded in its forward."""
        for m in self.modules():
            if isinstance(m, BatchStatistics):
                m.apply(gather)

    def discard_batch_statistics(self) -> None:
        """After a step is skipped: forget what its forward recorded."""
        for m in self.modules():
            if isinstance(m, BatchStatistics):
                m.discard()

    def validation_views(self) -> list[CompressionModel]:
        """The settings validation averages over (what picks ``best_model.pth``): the model itself;
        a variable-rate model, its lowest, middle and highest quality."""
        span = self.quality_range()
        if span is None:
            return [self]
        return [self.at_quality(q) for q in (span[0], (span[0] + span[1]) / 2, span[1])]

    def validation_stats(self) -> dict[str, float]:
        """Extra numbers for the validation log, gathered over the evaluation forwards since the last call."""
        return {}

    def adaptive_weight_layer(self) -> torch.Tensor | None:
        """The layer where VQGAN's adaptive weight compares gradient norms, for a model that asks for
        that balance of the adversarial term; None (the default): a fixed ``--lambda_adv``."""
        return None

    def rate_weights(self) -> dict[str, float]:
        """Multiplier of each latent's rate in the loss (all 1 unless a family says otherwise)."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the training loop optimises; the rest stays frozen (all, unless a family fine-tunes a
        part, e.g. the β realism decoder, trained with the encoder and entropy model fixed)."""
        return list(self.parameters())

    def adopt_weights(self, family: str, config: dict, state: dict, path) -> dict:
        """``--init_from`` a checkpoint of another family: its weights under this model's names, for a
        family built to start from another's (the hierarchical model from a β one); others refuse."""
        raise CheckpointError(f"{path} holds a {family} model; this script trains {self.family}")

    def coding_state(self) -> dict[str, torch.Tensor]:
        """The weights a file depends on: the streams it holds and its decode at the default
        settings. Modules that only a decode-time option uses (the realism decoder) are left out, so
        adding or retraining them keeps the files, and the identity, of the model they extend."""
        return self.state_dict()

    def decoding_state(self) -> dict[str, torch.Tensor]:
        """The weights this view's decode depends on: :meth:`coding_state`, unless a decode-time
        setting brings in modules outside it (a realism above 0). Caches of measured points key on it."""
        return self.coding_state()

    def identity(self) -> bytes:
        """8-byte identity written into every file (over :meth:`coding_state`); cached, since a
        loaded model does not change."""
        if self._identity is None or self.training:
            self._identity = model_id(self.coding_state())
        return self._identity

    def weights_digest(self) -> str:
        """sha256 over every weight (what caches of measured outputs key on, with the view settings)."""
        if self._digest is None or self.training:
            self._digest = state_digest(self.state_dict())
        return self._digest
