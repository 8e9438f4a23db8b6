"""The one training loop, shared by every family.

Loss (per image, rates in bits per pixel)::

    L_G = lambda_d * D(x, x_hat) + beta * sum_k w_k R_k + lambda_adv * L_adv + lambda_perc * L_perc + extra
    D   = 255^2 * MSE   (or 1 - MS-SSIM)        R_k = -log2 p(y_k~) / pixels
    L_perc = LPIPS-alex(x_hat, x), or without its ImageNet weights (``--perceptual auto``) the
             discriminator feature-matching L1 of pix2pixHD/HiFiC, active while the discriminator trains

With the default ``lambda_d = 0.0067``, ``beta = 1`` is CompressAI's quality-3 trade-off; larger
beta means fewer bits. The generator step and the discriminator step are two visible blocks; the
discriminator and both optimizers belong to this loop, not to the model or the loss.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.checkpoint import atomic_save, model_state, read_checkpoint
from common.cli import run_cli  # noqa: F401 - re-exported for older imports
from common.datasets import CropDataset, EpochBatches, resolve_set
from common.errors import CheckpointError, VAEGANError

DEFAULT_DISTORTION_WEIGHT = {"mse": 0.0067, "ms-ssim": 8.73}


@dataclass
class TrainConfig:
    output_dir: str = "./output"
    data_dir: str = "../data"
    train_sets: list[str] = field(default_factory=lambda: ["bsds500/train"])
    val_sets: list[str] = field(default_factory=lambda: ["bsds500/val"])
    beta: float = 1.0
    lambda_adv: float = 0.1
    disc_start: int = 5000
    distortion: str = "mse"
    distortion_weight: float | None = None
    lambda_perceptual: float = 0.0
    perceptual: str = "auto"  # lpips | feature_matching | auto (LPIPS when its weights are present)
    batch_size: int = 16
    epochs: int = 100
    max_steps: int | None = None
    patch_size: int = 256
    lr: float = 1e-4
    disc_lr: float = 1e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    clip_grad: float = 1.0
    val_every: int | None = None  # steps; default: once per epoch
    val_images: int = 24
    save_every: int = 500
    log_every: int = 20
    max_nonfinite: int = 20
    num_workers: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: str | None = None
    init_from: str | None = None


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def rate_bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> dict[str, torch.Tensor]:
    """Bits per pixel of each latent, averaged over the batch."""
    batch = next(iter(likelihoods.values())).shape[0]
    return {k: -torch.log2(v).sum() / (batch * num_pixels) for k, v in likelihoods.items()}


def distortion(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(x_hat, x) * 255.0**2
    from pytorch_msssim import ms_ssim

    return 1.0 - ms_ssim(x_hat, x, data_range=1.0)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def adaptive_weight(
    nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's adversarial weight (Esser et al. 2021, eq. 7): |grad nll| / (|grad g| + 1e-4) at ``last_layer``.

    Both gradients are taken at the decoder's last layer, so the adversarial term starts at the
    scale of the reconstruction term whatever their magnitudes; the weight itself is a constant.
    """
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


PERCEPTUAL_CHOICES = ("auto", "lpips", "feature_matching")


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between discriminator activations of x and x_hat.

    The perceptual term of pix2pixHD (Wang et al. 2018), used by HiFiC-style training when no
    ImageNet network is available. ``real`` are targets: no gradient flows into them.
    """
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real, fake)) / len(real)


# --------------------------------------------------------------------------------------------------
# Command line


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per dataclass field (snake_case, with a kebab-case alias)."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if kind.startswith("list"):
            parser.add_argument(*names, dest=f.name, nargs="+", default=default)
        elif kind.startswith("bool"):
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        else:
            base = kind.split("|")[0].strip()
            typ = {"int": int, "float": float, "str": str}.get(base, str)
            parser.add_argument(*names, dest=f.name, type=typ, default=default)


def build_parser(description: str, model_config_cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
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
    model_cfg = model_config_cls(**{k: v for k, v in values.items() if k in model_fields})
    train_cfg = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
    return model_cfg, train_cfg


# --------------------------------------------------------------------------------------------------
# The loop


class Trainer:
    def __init__(self, model_cls, model_cfg, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.distortion not in DEFAULT_DISTORTION_WEIGHT:
            raise VAEGANError(f"--distortion must be one of {', '.join(DEFAULT_DISTORTION_WEIGHT)}")
        self.lambda_d = cfg.distortion_weight or DEFAULT_DISTORTION_WEIGHT[cfg.distortion]
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        self.model = model_cls(model_cfg).to(self.device)
        self.disc = self.model.build_discriminator().to(self.device)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
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
        if cfg.resume:
            self._resume(self.ckpt_dir / "latest.pth" if cfg.resume == "auto" else Path(cfg.resume))
        elif cfg.init_from:
            self._init_from(Path(cfg.init_from))

    def _perceptual_backend(self) -> tuple[torch.nn.Module | None, str]:
        """(LPIPS network or None, backend): "none", "lpips-alex" or "disc-feature-matching".

        ``auto`` takes LPIPS when torchvision's AlexNet weights are in the hub cache, else says so
        once and falls back to feature matching on the discriminator, which needs no ImageNet weights.
        """
        cfg = self.cfg
        if cfg.perceptual not in PERCEPTUAL_CHOICES:
            raise VAEGANError(
                f"--perceptual must be one of {', '.join(PERCEPTUAL_CHOICES)}, got {cfg.perceptual!r}"
            )
        if cfg.lambda_perceptual <= 0:
            return None, "none"
        if cfg.perceptual in ("lpips", "auto"):
            from common.metrics import MetricError, load_lpips

            try:
                return load_lpips(self.device, net="alex", on_missing="raise"), "lpips-alex"
            except MetricError as exc:
                if cfg.perceptual == "lpips":
                    raise
                print(
                    f"perceptual loss: LPIPS unavailable, using discriminator feature matching instead ({exc})"
                )
        if cfg.lambda_adv <= 0:
            raise VAEGANError(
                "discriminator feature matching needs a trained discriminator: set --lambda_adv > 0, "
                "or provide the LPIPS weights, or set --lambda_perceptual 0"
            )
        if not callable(getattr(self.disc, "features", None)):
            raise VAEGANError(
                f"the {self.model.family} discriminator has no features(x, cond) method, "
                "which feature matching needs; use --perceptual lpips"
            )
        return None, "disc-feature-matching"

    # ---- checkpoints --------------------------------------------------------------------------

    def _state(self) -> dict:
        return model_state(self.model) | {
            "train_config": asdict(self.cfg) | {"perceptual_backend": self.perceptual_backend},
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def save(self, name: str, state: dict | None = None) -> dict:
        state = state or self._state()
        atomic_save(state, self.ckpt_dir / name)
        return state

    def _check_family(self, ckpt: dict, path: Path) -> None:
        if ckpt["family"] != self.model.family:
            raise CheckpointError(
                f"{path} holds a {ckpt['family']} model; this script trains {self.model.family}"
            )
        if ckpt["config"] != asdict(self.model.config):
            diff = {
                k: (v, asdict(self.model.config).get(k))
                for k, v in ckpt["config"].items()
                if asdict(self.model.config).get(k) != v
            }
            raise CheckpointError(
                f"{path}: model config differs from the flags given (checkpoint vs flags: {diff})"
            )

    def _resume(self, path: Path) -> None:
        if not path.exists():
            raise CheckpointError(f"--resume: no checkpoint at {path}")
        ckpt = read_checkpoint(path)
        self._check_family(ckpt, path)
        if "opt_g" not in ckpt:
            raise CheckpointError(
                f"{path} has no optimizer state (a released model, not a training checkpoint)"
            )
        self.model.load_state_dict(ckpt["model"])
        self.disc.load_state_dict(ckpt["disc"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.best_val = float(ckpt["best_val"])
        before = ckpt.get("train_config", {}).get("perceptual_backend", self.perceptual_backend)
        if before != self.perceptual_backend:
            print(f"note: perceptual loss was {before} before this resume, now {self.perceptual_backend}")
        torch.set_rng_state(ckpt["rng_torch"])
        if torch.cuda.is_available() and ckpt.get("rng_cuda"):
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        print(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    def _init_from(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        self._check_family(ckpt, path)
        self.model.load_state_dict(ckpt["model"])
        if "disc" in ckpt:
            self.disc.load_state_dict(ckpt["disc"])
        print(
            f"initialised weights from {path} (step {ckpt.get('step', '?')}); optimizer and step start fresh"
        )

    # ---- one step -----------------------------------------------------------------------------

    def generator_loss(self, x: torch.Tensor, out, adversarial: bool) -> tuple[torch.Tensor, dict]:
        rates = rate_bpp(out.likelihoods, x.shape[-2] * x.shape[-1])
        weights = self.model.rate_weights()
        rate = sum(weights.get(k, 1.0) * r for k, r in rates.items())
        dist = distortion(x, out.x_hat, self.cfg.distortion)
        loss = self.lambda_d * dist + self.cfg.beta * rate
        logs = {
            "bpp": float(sum(rates.values()).detach()),
            "distortion": float(dist.detach()),
            **{f"bpp_{k}": float(v.detach()) for k, v in rates.items()},
        }
        for name, term in out.extra_losses.items():
            loss = loss + term
            logs[name] = float(term.detach())
        fake_features = None
        if adversarial:
            if self.perceptual_backend == "disc-feature-matching":
                fake_features = self.disc.features(out.x_hat, out.cond)
                fake_logits = fake_features[-1]
            else:
                fake_logits = self.disc(out.x_hat, out.cond)
            g_adv = -fake_logits.mean()
            weight = 1.0
            if getattr(self.model.config, "adaptive_weight", False):  # the model asks for VQGAN's balance
                weight = adaptive_weight(loss, g_adv, self.model.last_layer_weight())
                logs["adv_weight"] = float(weight)
            loss = loss + self.cfg.lambda_adv * weight * g_adv
            logs["g_adv"] = float(g_adv.detach())
        perc = self.perceptual_loss(x, out, fake_features)
        if perc is not None:
            loss = loss + self.cfg.lambda_perceptual * perc
            logs["perceptual"] = float(perc.detach())
        with torch.no_grad():
            mse = F.mse_loss(out.x_hat.clamp(0, 1), x)
            logs["psnr"] = float(10 * torch.log10(1.0 / mse.clamp_min(1e-10)))
        logs["loss"] = float(loss.detach())
        return loss, logs

    def perceptual_loss(self, x: torch.Tensor, out, fake_features: list[torch.Tensor] | None):
        """LPIPS(x_hat, x); or, while the discriminator trains, L1 between its features of x and x_hat; or None."""
        if self.perceptual_backend == "lpips-alex":
            return self.perceptual(out.x_hat * 2 - 1, x * 2 - 1).mean()
        if self.perceptual_backend == "disc-feature-matching" and fake_features is not None:
            with torch.no_grad():
                real_features = self.disc.features(x, out.cond)
            return feature_matching_loss(real_features[:-1], fake_features[:-1])
        return None

    def train_step(self, x: torch.Tensor) -> dict | None:
        cfg = self.cfg
        lr = lr_at(self.step, self.total_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        adversarial = cfg.lambda_adv > 0 and self.step >= cfg.disc_start
        self.model.train()

        # -- generator step --
        out = self.model(x)
        loss, logs = self.generator_loss(x, out, adversarial)
        if not torch.isfinite(loss):
            self.nonfinite += 1
            print(f"step {self.step}: non-finite loss skipped ({self.nonfinite}/{cfg.max_nonfinite})")
            if self.nonfinite >= cfg.max_nonfinite:
                raise VAEGANError(f"stopping: {self.nonfinite} non-finite losses (lower --lr?)")
            self.opt_g.zero_grad(set_to_none=True)
            return None
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.opt_g.step()

        # -- discriminator step --
        if adversarial:
            cond = out.cond.detach() if out.cond is not None else None
            d_loss = hinge_d_loss(self.disc(x, cond), self.disc(out.x_hat.detach(), cond))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["d_loss"] = float(d_loss.detach())
        logs["lr"] = lr
        return logs

    # ---- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        n = min(len(self.val_set), self.cfg.val_images)
        totals: dict[str, float] = {}
        samples = []
        for i in range(n):
            x = self.val_set[i].unsqueeze(0).to(self.device)
            out = self.model(x)
            rates = rate_bpp(out.likelihoods, x.shape[-2] * x.shape[-1])
            x_hat = out.x_hat.clamp(0, 1)
            mse = F.mse_loss(x_hat, x)
            dist = distortion(x, x_hat, self.cfg.distortion)
            bpp = float(sum(rates.values()))
            row = {
                "loss": float(self.lambda_d * dist + self.cfg.beta * bpp),
                "bpp": bpp,
                "psnr": float(10 * torch.log10(1 / mse.clamp_min(1e-10))),
                **{f"bpp_{k}": float(v) for k, v in rates.items()},
            }
            for k, v in row.items():
                totals[k] = totals.get(k, 0.0) + v / n
            if i < 4:
                samples.append(torch.cat([x, x_hat], dim=-1))
        if samples:
            from torchvision.utils import save_image

            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            save_image(torch.cat(samples), self.out / "samples" / f"step_{self.step:07d}.png", nrow=1)
        extra = getattr(self.model, "validation_stats", None)
        if callable(extra):
            totals.update(extra())
        return totals

    # ---- run ----------------------------------------------------------------------------------

    def _loader(self):
        sampler = EpochBatches(
            len(self.train_set), self.cfg.batch_size, self.epoch, self.cfg.seed, skip=self.batch_in_epoch
        )
        # A private generator: creating the iterator must not draw from the global RNG, or a resumed
        # run would diverge from an uninterrupted one (crops are keyed by index/epoch/seed anyway).
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def fit(self) -> dict:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        (self.out / "config.json").write_text(
            __import__("json").dumps(
                {"family": self.model.family, "model": asdict(self.model.config), "train": asdict(cfg)},
                indent=2,
            )
        )
        writer = _tensorboard(self.out / "logs")
        train_csv = _CsvLog(self.out / "logs" / "train.csv")
        val_csv = _CsvLog(self.out / "logs" / "val.csv")
        val_every = cfg.val_every or self.batches_per_epoch
        interrupted = {"flag": False}

        def on_sigint(signum, frame):
            interrupted["flag"] = True

        old = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.model.family,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
        )
        start = time.time()
        last = {}
        try:
            while self.step < self.total_steps and not interrupted["flag"]:
                for batch in self._loader():
                    logs = self.train_step(batch.to(self.device, non_blocking=True))
                    self.step += 1
                    self.batch_in_epoch += 1
                    bar.update(1)
                    if logs is not None:
                        last = logs
                        if self.step % cfg.log_every == 0:
                            bar.set_postfix(
                                loss=f"{logs['loss']:.3f}",
                                bpp=f"{logs['bpp']:.3f}",
                                psnr=f"{logs['psnr']:.2f}",
                            )
                            train_csv.write(
                                {
                                    "step": self.step,
                                    "epoch": self.epoch,
                                    "time_s": round(time.time() - start, 1),
                                    **logs,
                                }
                            )
                            for k, v in logs.items():
                                writer.add_scalar(f"train/{k}", v, self.step)
                    if self.step % val_every == 0 or self.step == self.total_steps:
                        self._validate_and_save(val_csv, writer)
                    elif self.step % cfg.save_every == 0:
                        self.save("latest.pth")
                    if self.step >= self.total_steps or interrupted["flag"]:
                        break
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
            if interrupted["flag"]:
                self.save("latest.pth")
                print(
                    f"\ninterrupted: saved {self.ckpt_dir / 'latest.pth'} at step {self.step}; "
                    "continue with --resume"
                )
        finally:
            bar.close()
            writer.close()
            if old is not None:
                signal.signal(signal.SIGINT, old)
        return last

    def _validate_and_save(self, val_csv, writer) -> None:
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
        if improved:
            self.save("best_model.pth", state | {"best_val": self.best_val})


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _CsvLog:
    """Append-only CSV whose header grows when a later row brings new columns (e.g. after --disc_start)."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] = []
        if path.exists():
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f), [])
            with open(path, "rb+") as f:  # a run killed mid-row: end that row before appending
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            rows = []
            if self.path.exists() and self.fields:
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.fields += new
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, self.fields)
                writer.writeheader()
                writer.writerows(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)


class _NullWriter:
    def add_scalar(self, *a, **k):
        pass

    def close(self):
        pass


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(folder / "tb"))
    except ImportError:  # tensorboard is optional at run time
        return _NullWriter()


def train(model_cls, argv=None, description: str | None = None) -> int:
    """Entry point used by each family's main.py."""
    parser = build_parser(description or f"Train a {model_cls.family} model", model_cls.Config)
    args = parser.parse_args(argv)
    model_cfg, cfg = split_args(args, model_cls.Config)
    os.makedirs(cfg.output_dir, exist_ok=True)
    last = Trainer(model_cls, model_cfg, cfg).fit()
    if last:
        print(
            f"done: step logs in {Path(cfg.output_dir) / 'logs'}; "
            f"checkpoints in {Path(cfg.output_dir) / 'checkpoints'}"
        )
    return 0
