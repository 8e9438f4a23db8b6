"""The one training loop, shared by every family.

Loss (per image, rates in bits per pixel)::

    L_G = lambda_d * (D(x, x_hat) + sum_j v_j D(x, x_hat_j)) + beta * sum_k w_k R_k
          + omega * (lambda_adv * L_adv + lambda_perc * L_perc) + extra
    D   = 255^2 * MSE   (or 1 - MS-SSIM)        R_k = -log2 p(y_k~) / pixels
    L_perc = LPIPS-alex(x_hat, x), or without its ImageNet weights (``--perceptual auto``) the
             discriminator feature-matching L1 of pix2pixHD/HiFiC, active while the discriminator trains
    x_hat_j, v_j: extra reconstructions a family asks to be scored (ModelOutput.extra_reconstructions)
    omega: per image, a realism-conditioned decoder's realism (ModelOutput.realism); else 1
    Only ``model.trainable_parameters()`` learn; a model that trains a part (the β realism decoder)
    must start from a trained one (--init_from).

With the default ``lambda_d = 0.0067``, ``beta = 1`` is CompressAI's quality-3 trade-off; larger
beta means fewer bits. The generator step and the discriminator step are two visible blocks; the
discriminator and both optimizers belong to this loop, not to the model or the loss.

Data-parallel: the same command under ``torchrun --nproc_per_node N`` trains on N processes
(common/distributed.py). ``--batch_size`` is the *global* batch: each rank takes its slice of the
batch one process would take, so step, epoch and checkpoints mean the same whatever N, and a run
resumes on another number of processes. Only rank 0 logs and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import distributed
from common.checkpoint import atomic_save, init_weights, restore_training, training_state
from common.cli import (  # noqa: F401 - run_cli re-exported for older imports
    HelpFormatter,
    option,
    run_cli,
)
from common.datasets import CropDataset, EpochBatches, resolve_set
from common.errors import VAEGANError
from common.losses import (
    adaptive_weight,
    distortion,
    feature_matching_loss,
    hinge_d_loss,
    per_image_mean,
    rate_bpp,
)
from common.run_folder import CsvLog, LogWindow, NullWriter, RunLock, tensorboard

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
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min_lr_ratio must be between 0 and 1, not {self.min_lr_ratio}")


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


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


# --------------------------------------------------------------------------------------------------
# The loop


class Trainer:
    def __init__(self, model_cls, model_cfg, cfg: TrainConfig):
        self.cfg = cfg
        self._lock: RunLock | None = None  # taken by fit(), released by close()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.lambda_d = cfg.distortion_weight or DEFAULT_DISTORTION_WEIGHT[cfg.distortion]
        self.dist, self.device = distributed.setup(cfg.device)
        self.is_main = self.dist.is_main
        self.local_batch = distributed.split_batch(cfg.batch_size, self.dist.world_size)
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        self.model = model_cls(model_cfg).to(self.device)
        m = self.model.pad_multiple
        if cfg.patch_size < m or cfg.patch_size % m:
            raise VAEGANError(
                f"--patch_size {cfg.patch_size} does not fit this {model_cls.family} model: crops must be a "
                f"multiple of {m} px (its coarsest latent is 1/{m} of the image); try {max(m, round(cfg.patch_size / m) * m)}"
            )
        self.disc = self.model.build_discriminator().to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.disc.to(memory_format=torch.channels_last)
        if self.dist.rank > 0:  # same initial weights, then an own noise stream per rank
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.dist.rank))
        self.trainable = self.model.trainable_parameters()
        if len(self.trainable) < len(list(self.model.parameters())):
            # a family fine-tuning one part (the β realism decoder): the rest is frozen, and must be trained
            if not (cfg.init_from or cfg.resume):
                raise VAEGANError(
                    f"this {model_cls.family} model trains only a part of its weights on top of a trained "
                    "model: start it from one with --init_from CHECKPOINT"
                )
            self.model.requires_grad_(False)
            for p in self.trainable:
                p.requires_grad_(True)
        self.opt_g = torch.optim.Adam(self.trainable, lr=cfg.lr)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.train_set = CropDataset([resolve_set(cfg.data_dir, s) for s in cfg.train_sets], cfg.patch_size)
        self.val_set = CropDataset(
            [resolve_set(cfg.data_dir, s) for s in cfg.val_sets], cfg.patch_size, random=False
        )
        if len(self.train_set) < cfg.batch_size:
            raise VAEGANError(
                f"batch size {cfg.batch_size} is larger than the training set ({len(self.train_set)} images)"
            )
        self.batches_per_epoch = len(self.train_set) // cfg.batch_size
        self.total_steps = cfg.max_steps or cfg.epochs * self.batches_per_epoch
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_val = float("inf")
        self.nonfinite = 0
        self.perceptual, self.perceptual_backend = self._perceptual_backend()
        self._replace_old_checkpoints = self.is_main and not cfg.resume and self._holds_a_run()
        if cfg.resume:
            self._resume(self.ckpt_dir / "latest.pth" if cfg.resume == "auto" else Path(cfg.resume))
        elif cfg.init_from:
            init_weights(Path(cfg.init_from), self.model, self.disc, self._print)
        self._wrap_for_training()

    def _holds_a_run(self) -> bool:
        """True when --output_dir holds a run that --overwrite asks to set aside; an error without it.

        A new run never overwrites an earlier run's checkpoints (its best_model.pth above all)."""
        found = [p for p in (self.ckpt_dir / "latest.pth", self.ckpt_dir / "best_model.pth") if p.exists()]
        if found and not self.cfg.overwrite:
            raise VAEGANError(
                f"{self.out} holds a run ({found[0]}): continue it with --resume, start a new one with "
                "--overwrite (its checkpoints are kept aside), or choose another --output_dir"
            )
        return bool(found)

    def _print(self, *args, **kwargs) -> None:
        if self.is_main:
            print(*args, **kwargs)

    def _wrap_for_training(self) -> None:
        """The callables the step runs: DDP and/or compiled wrappers of the same (saved) modules."""
        cfg = self.cfg
        self.g_forward, self.d_forward = self.model, self.disc
        if self.dist.enabled:
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP

            # Buffers are synchronised after each step instead (distributed.broadcast_buffers), so
            # that rank 0's coding tables, rebuilt when it saves, never travel.
            newer = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            kw = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
            kw["device_ids"] = [self.device.index] if self.device.type == "cuda" else None
            self.g_forward = DDP(self.model, **kw)
            self.d_forward = DDP(self.disc, **kw)
        if cfg.compile:
            self.g_forward = torch.compile(self.g_forward)
            self.d_forward = torch.compile(self.d_forward)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    def _perceptual_backend(self) -> tuple[torch.nn.Module | None, str]:
        """(LPIPS network or None, backend): "none", "lpips-alex" or "disc-feature-matching".

        ``auto`` takes LPIPS when torchvision's AlexNet weights are in the hub cache, else says so
        once and falls back to feature matching on the discriminator, which needs no ImageNet weights.
        """
        cfg = self.cfg
        if cfg.lambda_perceptual <= 0:
            return None, "none"
        if cfg.perceptual in ("lpips", "auto"):
            from common.metrics import MetricError, load_lpips

            try:
                return load_lpips(self.device, net="alex", on_missing="raise"), "lpips-alex"
            except MetricError as exc:
                if cfg.perceptual == "lpips":
                    raise
                self._print(
                    f"perceptual loss: LPIPS unavailable, using discriminator feature matching instead ({exc})"
                )
        if cfg.lambda_adv <= 0:
            raise VAEGANError(
                "discriminator feature matching needs a trained discriminator: set --lambda_adv > 0, "
                "or provide the LPIPS weights, or set --lambda_perceptual 0"
            )
        return None, "disc-feature-matching"

    # ---- checkpoints --------------------------------------------------------------------------

    def _state(self) -> dict:
        """The checkpoint (rank 0; {} elsewhere). Collective: every rank must call it at the same step."""
        rng = distributed.rng_states(self.dist, self.device)  # collective
        if not self.is_main:
            return {}
        progress = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val,
            "world_size": self.dist.world_size,
        }
        train_config = asdict(self.cfg) | {"perceptual_backend": self.perceptual_backend}
        return training_state(self.model, self.disc, self.opt_g, self.opt_d, train_config, progress | rng)

    def save(self, name: str, state: dict | None = None) -> dict:
        """Rank 0 writes atomically; the others wait, so no rank runs ahead of a checkpoint."""
        state = state if state is not None else self._state()
        if self.is_main:
            atomic_save(state, self.ckpt_dir / name)
        self.dist.barrier()
        return state

    def _resume(self, path: Path) -> None:
        ckpt = restore_training(path, self.model, self.disc, self.opt_g, self.opt_d)
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.best_val = float(ckpt["best_val"])
        before = ckpt.get("train_config", {}).get("perceptual_backend", self.perceptual_backend)
        if before != self.perceptual_backend:
            self._print(
                f"note: perceptual loss was {before} before this resume, now {self.perceptual_backend}"
            )
        distributed.restore_rng(ckpt, self.dist, self.device, self.cfg.seed, self.step)
        saved_world = int(ckpt.get("world_size", 1))
        if saved_world != self.dist.world_size:
            self._print(
                f"note: checkpoint written by {saved_world} process(es), resuming on {self.dist.world_size} "
                f"(global batch {self.cfg.batch_size} unchanged)"
            )
        self._print(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    # ---- one step -----------------------------------------------------------------------------

    def generator_loss(self, x: torch.Tensor, out, adversarial: bool) -> tuple[torch.Tensor, dict]:
        """The generator loss and its terms as detached 0-d tensors (no host sync)."""
        likelihoods = {k: v.float() for k, v in out.likelihoods.items()}
        rates = rate_bpp(likelihoods, x.shape[-2] * x.shape[-1])
        weights = self.model.rate_weights()
        x_hat = out.x_hat.float()
        if out.rate_scale is None:
            rate = sum(weights.get(k, 1.0) * r for k, r in rates.items())
            dist = distortion(x, x_hat, self.cfg.distortion)
            loss = self.lambda_d * dist + self.cfg.beta * rate
        else:  # variable rate: each image its own beta, and its own weight in the batch
            per_image = rate_bpp(likelihoods, x.shape[-2] * x.shape[-1], per_image=True)
            rate = sum(weights.get(k, 1.0) * out.rate_scale * r for k, r in per_image.items())
            dists = distortion(x, x_hat, self.cfg.distortion, per_image=True)
            image_weight = torch.ones_like(dists) if out.image_weight is None else out.image_weight
            loss = (image_weight * (self.lambda_d * dists + self.cfg.beta * rate)).mean()
            dist = dists.mean()
        logs = {
            "bpp": sum(rates.values()).detach(),
            "distortion": dist.detach(),
            **{f"bpp_{k}": v.detach() for k, v in rates.items()},
        }
        for name, term in out.extra_losses.items():
            loss = loss + term.float()
            logs[name] = term.detach().float()
        for name, (x_other, weight) in out.extra_reconstructions.items():
            d_other = distortion(x, x_other.float(), self.cfg.distortion)
            loss = loss + weight * self.lambda_d * d_other
            logs[f"distortion_{name}"] = d_other.detach()
        fake_features = None
        if adversarial:
            with self._autocast():
                if self.perceptual_backend == "disc-feature-matching":
                    fake_features = self.disc.features(out.x_hat, out.cond)
                    fake_logits = fake_features[-1]
                else:
                    fake_logits = self.disc(out.x_hat, out.cond)
            g_adv = per_image_mean(-fake_logits.float(), out.realism)
            weight = 1.0
            layer = self.model.adaptive_weight_layer()
            if layer is not None:  # the model asks for VQGAN's balance
                reduce = (lambda g: distributed.all_reduce_mean(g, self.dist)) if self.dist.enabled else None
                weight = adaptive_weight(loss, g_adv, layer, reduce=reduce)
                logs["adv_weight"] = weight
            loss = loss + self.cfg.lambda_adv * weight * g_adv
            logs["g_adv"] = g_adv.detach()
        perc = self.perceptual_loss(x, out, fake_features)
        if perc is not None:
            loss = loss + self.cfg.lambda_perceptual * perc.float()
            logs["perceptual"] = perc.detach().float()
        with torch.no_grad():
            mse = F.mse_loss(x_hat.clamp(0, 1), x)
            logs["psnr"] = 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
        logs["loss"] = loss.detach()
        return loss, logs

    def perceptual_loss(self, x: torch.Tensor, out, fake_features: list[torch.Tensor] | None):
        """LPIPS(x_hat, x) (each image weighted by its ``out.realism``); or, while the discriminator
        trains, L1 between its features of x and x_hat; or None."""
        if self.perceptual_backend == "lpips-alex":
            return per_image_mean(self.perceptual(out.x_hat.float() * 2 - 1, x * 2 - 1), out.realism)
        if self.perceptual_backend == "disc-feature-matching" and fake_features is not None:
            with torch.no_grad(), self._autocast():
                real_features = self.disc.features(x, out.cond)
            return feature_matching_loss(
                [f.float() for f in real_features[:-1]], [f.float() for f in fake_features[:-1]], out.realism
            )
        return None

    def train_step(self, x: torch.Tensor) -> dict | None:
        """One generator and one discriminator update; logs as device tensors, or None if skipped.

        The one host sync is the finiteness test of the loss (agreed between ranks), which decides
        whether the step is applied.
        """
        cfg = self.cfg
        lr = lr_at(self.step, self.total_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        adversarial = cfg.lambda_adv > 0 and self.step >= cfg.disc_start
        self.model.train()
        self.disc.train()

        # -- generator step (the discriminator's weights are constants here) --
        self.disc.requires_grad_(False)
        with self._autocast():
            out = self.g_forward(x)
        loss, logs = self.generator_loss(x, out, adversarial)
        finite = torch.isfinite(loss)
        if self.dist.enabled:
            finite = finite.to(torch.int32)
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            self.nonfinite += 1
            self._print(f"step {self.step}: non-finite loss skipped ({self.nonfinite}/{cfg.max_nonfinite})")
            if self.nonfinite >= cfg.max_nonfinite:
                raise VAEGANError(f"stopping: {self.nonfinite} non-finite losses (lower --lr?)")
            self.opt_g.zero_grad(set_to_none=True)
            self.model.discard_batch_statistics()  # a skipped step changes nothing, codebooks included
            self.disc.requires_grad_(True)
            distributed.broadcast_buffers(self.model, self.dist)
            return None
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.trainable, cfg.clip_grad)
        self.opt_g.step()
        self.model.apply_batch_statistics(distributed.batch_gather(self.dist))
        self.disc.requires_grad_(True)

        # -- discriminator step --
        if adversarial:
            cond = out.cond.detach() if out.cond is not None else None
            with self._autocast():
                real, fake = self.d_forward(x, cond), self.d_forward(out.x_hat.detach(), cond)
            d_loss = hinge_d_loss(real.float(), fake.float())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["d_loss"] = d_loss.detach()
        distributed.broadcast_buffers(self.model, self.dist)
        distributed.broadcast_buffers(self.disc, self.dist)
        logs["lr"] = lr
        return logs

    # ---- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict:
        """The training loss's terms on centre crops, averaged over the model's validation views
        (a variable-rate model: its lowest, middle and highest quality), without noise or dropout."""
        self.model.eval()
        n = min(len(self.val_set), self.cfg.val_images)
        views = self.model.validation_views()
        totals: dict[str, float] = {}
        samples = []
        for i in range(n):
            x = self.val_set[i].unsqueeze(0).to(self.device)
            for v, view in enumerate(views):
                row, x_hat = self._validation_row(view, x)
                for k, value in row.items():
                    totals[k] = totals.get(k, 0.0) + value / (n * len(views))
                if i < 4 and v == len(views) // 2:
                    samples.append(torch.cat([x, x_hat], dim=-1))
        if samples:
            from torchvision.utils import save_image

            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            save_image(torch.cat(samples), self.out / "samples" / f"step_{self.step:07d}.png", nrow=1)
        totals.update(self.model.validation_stats())
        return totals

    def _validation_row(self, model, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """One image's validation numbers under ``model`` (a view), and its reconstruction."""
        out = model(x)
        rates = rate_bpp(out.likelihoods, x.shape[-2] * x.shape[-1])
        x_hat = out.x_hat.clamp(0, 1)
        mse = F.mse_loss(x_hat, x)
        dist = distortion(x, x_hat, self.cfg.distortion)
        # the training loss's terms: level rate weights, per-image weights, extra reconstructions
        weights = model.rate_weights()
        weighted = float(sum(weights.get(k, 1.0) * r for k, r in rates.items()))
        scale = 1.0 if out.rate_scale is None else float(out.rate_scale.mean())
        image_weight = 1.0 if out.image_weight is None else float(out.image_weight.mean())
        for x_other, weight in out.extra_reconstructions.values():
            dist = dist + weight * distortion(x, x_other.clamp(0, 1), self.cfg.distortion)
        loss = image_weight * float(self.lambda_d * dist + self.cfg.beta * scale * weighted)
        row = {
            "loss": loss,
            "bpp": float(sum(rates.values())),
            "psnr": float(10 * torch.log10(1 / mse.clamp_min(1e-10))),
            **{f"bpp_{k}": float(v) for k, v in rates.items()},
        }
        if self.perceptual_backend == "lpips-alex":  # the training loss's perceptual term too
            per_image = self.perceptual(x_hat * 2 - 1, x * 2 - 1)
            row["loss"] += self.cfg.lambda_perceptual * float(per_image_mean(per_image, out.realism))
            row["lpips"] = float(per_image.mean())
        return row, x_hat

    # ---- run ----------------------------------------------------------------------------------

    def _loader(self):
        """One loader for the run: workers persist (and keep their decoded images) across epochs;
        ``fit`` moves the sampler to each epoch and resume position."""
        self.sampler = EpochBatches(
            len(self.train_set),
            self.local_batch,
            self.epoch,
            self.cfg.seed,
            skip=self.batch_in_epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        # A private generator: creating the iterator must not draw from the global RNG, or a resumed
        # run would diverge from an uninterrupted one (crops are keyed by index/epoch/seed anyway).
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def fit(self) -> dict:
        """Train to ``total_steps`` (or Ctrl-C / SIGTERM); returns the last logged means (floats)."""
        cfg = self.cfg
        main = self.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.out)
            if self._replace_old_checkpoints and self.ckpt_dir.exists():
                # the earlier run's checkpoints, logs and samples, together: the new run's logs start empty
                aside = self.out / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
                aside.mkdir()
                for name in ("checkpoints", "logs", "samples", "config.json"):
                    if (self.out / name).exists():
                        (self.out / name).rename(aside / name)
                self._print(f"--overwrite: the earlier run (checkpoints, logs, samples) is kept in {aside}")
                self._replace_old_checkpoints = False
            (self.out / "logs").mkdir(exist_ok=True)
            (self.out / "config.json").write_text(
                __import__("json").dumps(
                    {
                        "family": self.model.family,
                        "model": asdict(self.model.config),
                        "train": asdict(cfg),
                        "world_size": self.dist.world_size,
                    },
                    indent=2,
                )
            )
        writer = tensorboard(self.out / "logs") if main else NullWriter()
        train_csv = CsvLog(self.out / "logs" / "train.csv") if main else None
        val_csv = CsvLog(self.out / "logs" / "val.csv") if main else None
        val_every = cfg.val_every or self.batches_per_epoch
        interrupted = {"flag": False}

        def on_signal(signum, frame):
            interrupted["flag"] = True

        old = (
            {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            if _main_thread()
            else {}
        )
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.model.family,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
            disable=not main,
        )
        window = LogWindow(self.dist)
        start = time.time()
        last: dict = {}

        def flush() -> None:
            nonlocal last
            means = window.flush()
            if not means:
                return
            last = means
            if main:
                bar.set_postfix(
                    loss=f"{means['loss']:.3f}", bpp=f"{means['bpp']:.3f}", psnr=f"{means['psnr']:.2f}"
                )
                train_csv.write(
                    {"step": self.step, "epoch": self.epoch, "time_s": round(time.time() - start, 1), **means}
                )
                for k, v in means.items():
                    writer.add_scalar(f"train/{k}", v, self.step)

        loader = self._loader()
        try:
            stop = False  # the interrupt as every rank agrees on it, so all stop at the same step
            while self.step < self.total_steps and not stop:
                self.sampler.epoch, self.sampler.skip = self.epoch, self.batch_in_epoch
                for batch in loader:
                    x = batch.to(self.device, non_blocking=True)
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    logs = self.train_step(x)
                    self.step += 1
                    self.batch_in_epoch += 1
                    bar.update(1)
                    window.add(logs, cfg.batch_size)
                    if self.step % cfg.log_every == 0:
                        flush()
                    stop = self.dist.any_true(interrupted["flag"])
                    if self.step % val_every == 0 or self.step == self.total_steps:
                        self._validate_and_save(val_csv, writer)
                    elif self.step % cfg.save_every == 0:
                        self.save("latest.pth")
                    if self.step >= self.total_steps or stop:
                        break
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
            flush()
            if stop:
                self.save("latest.pth")
                self._print(
                    f"\ninterrupted: saved {self.ckpt_dir / 'latest.pth'} at step {self.step}; "
                    "continue with --resume"
                )
        finally:
            bar.close()
            writer.close()
            for s, handler in old.items():
                signal.signal(s, handler)
            if main:
                self._lock.release()
        return last

    def _validate_and_save(self, val_csv, writer) -> None:
        """Rank 0 validates and keeps the best model; the others wait in ``save``."""
        improved = False
        if self.is_main:
            val = self.validate()
            val_csv.write({"step": self.step, **val})
            for k, v in val.items():
                writer.add_scalar(f"val/{k}", v, self.step)
            tqdm.write(
                f"step {self.step}: val loss {val['loss']:.4f} bpp {val['bpp']:.4f} psnr {val['psnr']:.2f}"
            )
            improved = val["loss"] < self.best_val
            if improved:
                self.best_val = val["loss"]
        state = self.save("latest.pth")
        if self.is_main and improved:
            atomic_save(state | {"best_val": self.best_val}, self.ckpt_dir / "best_model.pth")
        self.dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Release the run folder; leave the process group if this trainer joined it (``train`` calls this)."""
        lock = self._lock
        if lock is not None:
            lock.release()
            self._lock = None
        self.dist.close(wait)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(model_cls, argv=None, description: str | None = None) -> int:
    """Entry point used by each family's main.py."""
    parser = build_parser(description or f"Train a {model_cls.family} model", model_cls.Config)
    args = parser.parse_args(argv)
    model_cfg, cfg = split_args(args, model_cls.Config)
    os.makedirs(cfg.output_dir, exist_ok=True)
    trainer = Trainer(model_cls, model_cfg, cfg)
    try:
        last = trainer.fit()
    except BaseException:
        trainer.close(wait=False)
        raise
    trainer.close()
    if last and trainer.is_main:
        print(
            f"done: step logs in {Path(cfg.output_dir) / 'logs'}; "
            f"checkpoints in {Path(cfg.output_dir) / 'checkpoints'}"
        )
    return 0
