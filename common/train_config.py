"""The training run's settings: one frozen dataclass, validated on creation, and its command line.

Every flag of ``main.py`` comes from a dataclass field (:func:`common.cli.option` gives it help
and allowed values): :class:`TrainConfig` for the loop, the family's ``Config`` for the model.
Both are saved beside every checkpoint (``config.json``, and inside the checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from common.cli import HelpFormatter, option
from common.errors import VAEGANError

DEFAULT_DISTORTION_WEIGHT = {"mse": 0.0067, "ms-ssim": 8.73}
AMP_CHOICES = ("none", "bf16")
PERCEPTUAL_CHOICES = ("auto", "lpips", "feature_matching")


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = option("./output", "run folder: checkpoints/, logs/, samples/")
    data_dir: str = option("../data", "root of the image folders named by --train_sets and --val_sets")
    train_sets: list[str] = option(["bsds500/train"], "training image folders under --data_dir")
    val_sets: list[str] = option(["bsds500/val"], "validation image folders under --data_dir")
    beta: float = option(1.0, "weight of the rate (bits per pixel) in the loss: larger means fewer bits")
    lambda_adv: float = option(0.1, "weight of the adversarial term; 0 trains a distortion-only model")
    disc_start: int = option(5000, "step at which the discriminator and the adversarial term start")
    distortion: str = option("mse", "distortion term of the loss", tuple(DEFAULT_DISTORTION_WEIGHT))
    distortion_weight: float | None = option(
        None, "λ_d; none: 0.0067 for mse (β=1 is CompressAI's quality 3), 8.73 for ms-ssim"
    )
    lambda_perceptual: float = option(0.0, "weight of the perceptual term (see --perceptual); 0 turns it off")
    perceptual: str = option(
        "auto",
        "perceptual term: LPIPS-AlexNet, discriminator feature matching, or auto (LPIPS when its "
        "backbone can be had, else feature matching)",
        PERCEPTUAL_CHOICES,
    )
    batch_size: int = option(16, "images per step, over all processes under torchrun")
    epochs: int = option(100, "passes over the training set (ignored when --max_steps is set)")
    max_steps: int | None = option(None, "stop after this many steps; also the length of the LR schedule")
    patch_size: int = option(256, "side of the random training crops, in pixels")
    lr: float = option(1e-4, "peak learning rate of the model (Adam)")
    disc_lr: float = option(1e-4, "learning rate of the discriminator (Adam, betas 0.5, 0.9)")
    warmup_steps: int = option(200, "linear warm-up steps before the cosine decay")
    min_lr_ratio: float = option(0.05, "the cosine decay ends at this fraction of --lr")
    clip_grad: float = option(1.0, "gradient-norm clipping; 0 turns it off")
    weight_average: float = option(
        0.0,
        "decay of an exponential moving average of the trained weights (e.g. 0.999); 0 turns it off. "
        "Validation scores it beside the weights (val.csv: ema_*), checkpoints keep it, and "
        "scripts/export_model.py --ema ships it",
    )
    val_every: int | None = option(None, "validate every N steps; none: once per epoch")
    val_images: int = option(24, "validation images (centre crops) per validation")
    save_every: int = option(500, "write checkpoints/latest.pth every N steps")
    log_every: int = option(20, "one row of logs/train.csv (and TensorBoard) every N steps")
    max_nonfinite: int = option(20, "stop after this many consecutive steps with a NaN or inf loss")
    num_workers: int = option(0, "data-loading worker processes")
    seed: int = option(0, "seed of every random generator (crops, noise, initial weights)")
    threads: int | None = option(None, "torch CPU threads; none: torch's default")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    overwrite: bool = option(
        False,
        "start a new run in an --output_dir that holds one; the old run's checkpoints/, logs/ and "
        "samples/ are kept in replaced-<time>/",
    )
    resume: str | None = option(
        None, "continue from OUTPUT_DIR/checkpoints/latest.pth or the given checkpoint"
    )
    init_from: str | None = option(
        None, "start from this checkpoint's weights (fresh optimizer and step); fine-tuning"
    )
    amp: str = option(
        "none",
        "bf16 autocasts transforms and discriminator (entropy models stay float32); pays on GPUs and "
        "CPUs with bf16 matrix units (Intel AMX), is far slower on others",
        AMP_CHOICES,
    )
    channels_last: bool = option(False, "NHWC memory layout (faster convolutions on recent GPUs)")
    compile: bool = option(False, "torch.compile the training forward passes")

    def __post_init__(self):
        """Validated on creation: a run never starts on settings it would fail on later."""
        for name, allowed in (
            ("distortion", DEFAULT_DISTORTION_WEIGHT),
            ("amp", AMP_CHOICES),
            ("perceptual", PERCEPTUAL_CHOICES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in ("batch_size", "patch_size", "val_images", "save_every", "log_every", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")
        for name in ("epochs", "max_steps", "val_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be at least 1, not {value}")
        for name in ("lr", "disc_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be positive, not {getattr(self, name)}")
        for name in ("beta", "lambda_adv", "lambda_perceptual", "clip_grad", "warmup_steps", "disc_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must not be negative, not {getattr(self, name)}")
        if self.distortion_weight is not None and not self.distortion_weight > 0:
            raise ValueError(f"--distortion_weight must be positive, not {self.distortion_weight}")
        if not 0 <= self.weight_average < 1:
            raise ValueError(f"--weight_average must be in [0, 1), not {self.weight_average}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min_lr_ratio must be between 0 and 1, not {self.min_lr_ratio}")

    @property
    def lambda_d(self) -> float:
        """The distortion weight in use: --distortion_weight, or the default of --distortion."""
        return self.distortion_weight or DEFAULT_DISTORTION_WEIGHT[self.distortion]


# --------------------------------------------------------------------------------------------------
# Command line


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per dataclass field (snake_case, with a kebab-case alias), with the field's help and choices."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kw = {"dest": f.name, "default": default, "help": f.metadata.get("help")}
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        if kind.startswith("list"):
            parser.add_argument(*names, nargs="+", **kw)
        elif kind.startswith("bool"):
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        else:
            base = kind.split("|")[0].strip()
            typ = {"int": int, "float": float, "str": str}.get(base, str)
            parser.add_argument(*names, type=typ, **kw)


def build_parser(description: str, model_config_cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    add_dataclass_args(parser, TrainConfig, skip=("resume",))
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from OUTPUT_DIR/checkpoints/latest.pth (or the given checkpoint)",
    )
    group = parser.add_argument_group("model")
    add_dataclass_args(group, model_config_cls)
    return parser


def split_args(args: argparse.Namespace, model_config_cls) -> tuple[object, TrainConfig]:
    values = vars(args)
    model_fields = {f.name for f in dataclasses.fields(model_config_cls)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:  # the configs validate themselves: a bad value is a one-line error, not a traceback
        model_cfg = model_config_cls(**{k: v for k, v in values.items() if k in model_fields})
        train_cfg = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
    except ValueError as exc:
        raise VAEGANError(str(exc)) from None
    return model_cfg, train_cfg
