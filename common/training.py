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

import math
import os
import random
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import distributed
from common.checkpoint import atomic_save, init_weights, restore_training, training_state
from common.datasets import CropDataset, EpochBatches, resolve_set
from common.errors import VAEGANError
from common.losses import (
    Critique,
    GeneratorLoss,
    adaptive_weight,
    hinge_d_loss,
    perceptual_backend,
)
from common.run_folder import (
    LogWindow,
    RunLock,
    RunLogs,
    StopSignal,
    holds_a_run,
    set_aside,
    write_run_config,
)
from common.train_config import TrainConfig, build_parser, split_args
from common.weight_average import WeightAverage


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# --------------------------------------------------------------------------------------------------
# The loop


class Trainer:
    def __init__(self, model_cls, model_cfg, cfg: TrainConfig):
        self.cfg = cfg
        self._lock: RunLock | None = None  # taken by fit(), released by close()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
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
        self.perceptual, self.perceptual_backend = perceptual_backend(cfg, self.device, self._print)
        self.loss = GeneratorLoss(cfg, self.perceptual, self.perceptual_backend, self._adversarial_weight)
        self._replace_old_checkpoints = (
            self.is_main and not cfg.resume and holds_a_run(self.out, cfg.overwrite)
        )
        self.ema: WeightAverage | None = None  # --weight_average: starts from the weights the run starts from
        ckpt = None
        if cfg.resume:
            ckpt = self._resume(self.ckpt_dir / "latest.pth" if cfg.resume == "auto" else Path(cfg.resume))
        elif cfg.init_from:
            init_weights(Path(cfg.init_from), self.model, self.disc, self._print)
        if cfg.weight_average:
            self.ema = WeightAverage(self.model, self.trainable, cfg.weight_average)
            if ckpt is not None and "ema" in ckpt:
                self.ema.load_state_dict(ckpt["ema"])
            elif ckpt is not None:
                self._print("note: the checkpoint holds no weight average; it starts from its weights")
        self._wrap_for_training()

    def _print(self, *args, **kwargs) -> None:
        if self.is_main:
            print(*args, **kwargs)

    def _wrap_for_training(self) -> None:
        """The callables the step runs: DDP and/or compiled wrappers of the same (saved) modules."""
        self.g_forward = distributed.wrap(self.model, self.dist, self.device)
        self.d_forward = distributed.wrap(self.disc, self.dist, self.device)
        if self.cfg.compile:
            self.g_forward = torch.compile(self.g_forward)
            self.d_forward = torch.compile(self.d_forward)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

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
        if self.ema is not None:
            progress["ema"] = self.ema.state_dict()
        return training_state(self.model, self.disc, self.opt_g, self.opt_d, train_config, progress | rng)

    def save(self, name: str, state: dict | None = None) -> dict:
        """Rank 0 writes atomically; the others wait, so no rank runs ahead of a checkpoint."""
        state = state if state is not None else self._state()
        if self.is_main:
            atomic_save(state, self.ckpt_dir / name)
        self.dist.barrier()
        return state

    def _resume(self, path: Path) -> dict:
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
        return ckpt

    # ---- one step -----------------------------------------------------------------------------

    def _adversarial_weight(self, loss: torch.Tensor, g_adv: torch.Tensor) -> torch.Tensor | None:
        """VQGAN's balance of the adversarial term, for a model that names its layer; else None."""
        layer = self.model.adaptive_weight_layer()
        if layer is None:
            return None
        reduce = (lambda g: distributed.all_reduce_mean(g, self.dist)) if self.dist.enabled else None
        return adaptive_weight(loss, g_adv, layer, reduce=reduce)

    def _critique(self, x: torch.Tensor, out) -> Critique:
        """The discriminator on x_hat (its weights constants here), and with feature matching its
        activations on x_hat and, without gradient, on x."""
        with self._autocast():
            if self.perceptual_backend != "disc-feature-matching":
                return Critique(self.disc(out.x_hat, out.cond))
            fake = self.disc.features(out.x_hat, out.cond)
            with torch.no_grad():
                real = self.disc.features(x, out.cond)
        return Critique(fake[-1], fake, real)

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
        critique = self._critique(x, out) if adversarial else None
        loss, logs = self.loss(x, out, self.model.rate_weights(), critique)
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
        if self.ema is not None:
            self.ema.update()
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
        (a variable-rate model: its lowest, middle and highest quality), without noise or dropout;
        with --weight_average, the same for the averaged weights as ``ema_*``."""
        totals = self._validate(self.model, samples=True)
        if self.ema is not None:
            totals |= {
                f"ema_{k}": v for k, v in self._validate(self.ema.averaged_model(), samples=False).items()
            }
        return totals

    def _validate(self, model, samples: bool) -> dict:
        model.eval()
        n = min(len(self.val_set), self.cfg.val_images)
        views = model.validation_views()
        totals: dict[str, float] = {}
        pairs = []
        for i in range(n):
            x = self.val_set[i].unsqueeze(0).to(self.device)
            for v, view in enumerate(views):
                row, x_hat = self.loss.validation_row(x, view(x), view.rate_weights())
                for k, value in row.items():
                    totals[k] = totals.get(k, 0.0) + value / (n * len(views))
                if samples and i < 4 and v == len(views) // 2:
                    pairs.append(torch.cat([x, x_hat], dim=-1))
        if pairs:
            from torchvision.utils import save_image

            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            save_image(torch.cat(pairs), self.out / "samples" / f"step_{self.step:07d}.png", nrow=1)
        totals.update(model.validation_stats())
        return totals

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
                aside = set_aside(self.out)  # the new run's logs start empty
                self._print(f"--overwrite: the earlier run (checkpoints, logs, samples) is kept in {aside}")
                self._replace_old_checkpoints = False
            write_run_config(
                self.out,
                {
                    "family": self.model.family,
                    "model": asdict(self.model.config),
                    "train": asdict(cfg),
                    "world_size": self.dist.world_size,
                },
            )
        logs = RunLogs(self.out, main)
        val_every = cfg.val_every or self.batches_per_epoch
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.model.family,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
            disable=not main,
        )
        window = LogWindow(self.dist)
        last: dict = {}

        def flush() -> None:
            nonlocal last
            means = window.flush()
            if means:
                last = means
                bar.set_postfix(
                    loss=f"{means['loss']:.3f}", bpp=f"{means['bpp']:.3f}", psnr=f"{means['psnr']:.2f}"
                )
                logs.train(self.step, self.epoch, means)

        loader = self._loader()
        try:
            with StopSignal() as signal:
                stop = False  # the interrupt as every rank agrees on it, so all stop at the same step
                while self.step < self.total_steps and not stop:
                    self.sampler.epoch, self.sampler.skip = self.epoch, self.batch_in_epoch
                    for batch in loader:
                        x = batch.to(self.device, non_blocking=True)
                        if cfg.channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                        window.add(self.train_step(x), cfg.batch_size)
                        self.step += 1
                        self.batch_in_epoch += 1
                        bar.update(1)
                        if self.step % cfg.log_every == 0:
                            flush()
                        stop = self.dist.any_true(signal.requested)
                        if self.step % val_every == 0 or self.step == self.total_steps:
                            self._validate_and_save(logs)
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
            logs.close()
            if main:
                self._lock.release()
        return last

    def _validate_and_save(self, logs: RunLogs) -> None:
        """Rank 0 validates and keeps the best model; the others wait in ``save``."""
        improved = False
        if self.is_main:
            val = self.validate()
            logs.val(self.step, val)
            average = f" (average: {val['ema_loss']:.4f})" if "ema_loss" in val else ""
            tqdm.write(
                f"step {self.step}: val loss {val['loss']:.4f} bpp {val['bpp']:.4f} psnr {val['psnr']:.2f}{average}"
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
