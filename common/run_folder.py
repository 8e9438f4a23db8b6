"""What a training run keeps in its folder besides checkpoints: the lock that keeps two runs apart,
the refusal to start over an earlier run (and ``--overwrite``, which sets it aside), config.json,
the CSV logs, TensorBoard, and the window that averages step logs between two log rows."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import torch

from common.errors import VAEGANError
from common.files import write_json

RUN_PARTS = ("checkpoints", "logs", "samples", "config.json")


def holds_a_run(out: Path, overwrite: bool) -> bool:
    """True when ``out`` holds a run that --overwrite asks to set aside; an error without it.

    A new run never overwrites an earlier run's checkpoints (its best_model.pth above all)."""
    ckpt_dir = Path(out) / "checkpoints"
    found = [p for p in (ckpt_dir / "latest.pth", ckpt_dir / "best_model.pth") if p.exists()]
    if found and not overwrite:
        raise VAEGANError(
            f"{out} holds a run ({found[0]}): continue it with --resume, start a new one with "
            "--overwrite (its checkpoints are kept aside), or choose another --output_dir"
        )
    return bool(found)


def set_aside(out: Path) -> Path:
    """Move the earlier run's checkpoints, logs, samples and config together into replaced-<time>/."""
    aside = Path(out) / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for name in RUN_PARTS:
        if (Path(out) / name).exists():
            (Path(out) / name).rename(aside / name)
    return aside


def write_run_config(out: Path, config: dict) -> None:
    """OUTPUT_DIR/config.json: the family and both configs, readable without loading a checkpoint."""
    (Path(out) / "logs").mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / "config.json", config)


class RunLock:
    """An exclusive lock on OUTPUT_DIR/.lock, so two runs in one folder cannot corrupt each other.

    ``flock`` is released by the kernel when the process ends, however it ends: a killed run never
    leaves a stale lock behind. The file holds the owner's pid, for the message.
    """

    def __init__(self, folder: Path):
        import fcntl

        self.path = folder / ".lock"
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            owner = self.file.read().strip() or "?"
            self.file.close()
            raise VAEGANError(
                f"another run is training in {folder} (pid {owner}); wait for it to end, or choose "
                "another --output_dir"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()


class LogWindow:
    """Sums of the step logs on the device since the last flush; one host sync (and, data-parallel,
    one all-reduce) per flush, so the step itself never waits for the GPU."""

    def __init__(self, env):
        self.env = env
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.host: dict[str, float] = {}
        self.images = 0
        self.t0 = time.perf_counter()

    def add(self, logs: dict | None, images: int) -> None:
        self.images += images
        if logs is None:
            return
        for k, v in logs.items():
            if torch.is_tensor(v):
                self.sums[k] = self.sums[k] + v.detach().float() if k in self.sums else v.detach().float()
                self.counts[k] = self.counts.get(k, 0) + 1
            else:
                self.host[k] = v  # e.g. the learning rate: the latest value

    def flush(self) -> dict[str, float]:
        """Means over the window (over ranks too: the global batch), plus images/s; {} if empty."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys])
        if self.env.enabled:
            torch.distributed.all_reduce(values)
            values = values / self.env.world_size
        means = {k: v / self.counts[k] for k, v in zip(keys, values.tolist())}
        elapsed = time.perf_counter() - self.t0
        out = means | self.host | {"images_per_s": round(self.images / max(elapsed, 1e-9), 2)}
        self.sums, self.counts, self.host, self.images = {}, {}, {}, 0
        self.t0 = time.perf_counter()
        return out


class CsvLog:
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


class NullWriter:
    def add_scalar(self, *a, **k):
        pass

    def close(self):
        pass


def tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(folder / "tb"))
    except ImportError:  # tensorboard is optional at run time
        return NullWriter()


class RunLogs:
    """logs/train.csv, logs/val.csv and TensorBoard together; on ranks other than 0, nothing."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.start = time.time()
        folder = Path(out) / "logs"
        self.writer = tensorboard(folder) if enabled else NullWriter()
        self.train_csv = CsvLog(folder / "train.csv") if enabled else None
        self.val_csv = CsvLog(folder / "val.csv") if enabled else None

    def train(self, step: int, epoch: int, means: dict) -> None:
        if self.enabled:
            self.train_csv.write(
                {"step": step, "epoch": epoch, "time_s": round(time.time() - self.start, 1)} | means
            )
            for k, v in means.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def val(self, step: int, values: dict) -> None:
        if self.enabled:
            self.val_csv.write({"step": step, **values})
            for k, v in values.items():
                self.writer.add_scalar(f"val/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class StopSignal:
    """While entered, Ctrl-C and SIGTERM only set ``requested``: the loop ends its step, saves and
    stops. Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
