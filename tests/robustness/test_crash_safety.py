"""Crash-safe training: SIGKILL at any moment leaves loadable checkpoints, --resume finishes the run,
SIGINT saves and exits cleanly, non-finite losses are skipped and then stop the run."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import read_checkpoint
from common.errors import VAEGANError
from common.training import Trainer
from tests.conftest import ROOT, make_image_splits, poison_loss, tiny_train_config

ENV = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
MAX_STEPS = 120  # long enough that a random kill lands mid-run even on a fast machine
WAIT_S = 240  # per phase; generous for a busy CI machine


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 8, "val": 2}, (64, 80))


def _start(data_dir: Path, out: Path, *extra: str, max_steps: int = MAX_STEPS) -> subprocess.Popen:
    args = [
        sys.executable,
        str(ROOT / "beta_vae_gan" / "main.py"),
        "--output_dir", str(out),
        "--data_dir", str(data_dir),
        "--train_sets", "train",
        "--val_sets", "val",
        "--N", "8", "--M", "8", "--disc_channels", "4",
        "--patch_size", "64", "--batch_size", "2",
        "--save_every", "1", "--log_every", "1", "--val_images", "2",
        "--disc_start", "2", "--max_steps", str(max_steps),
        "--threads", "1", "--device", "cpu",
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED.append(proc)
    return proc


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """A failing test must not leave a training process behind."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_for(predicate, proc: subprocess.Popen, what: str, poll: float = 0.001) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"training exited (rc {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)


def _check_all_checkpoints(ckpt_dir: Path) -> int:
    """Every checkpoint file present loads; returns the step of latest.pth."""
    files = sorted(ckpt_dir.glob("*.pth"))
    assert files, "no checkpoint survived"
    for path in files:
        ckpt = read_checkpoint(path)  # raises CheckpointError if the file is damaged
        assert 1 <= int(ckpt["step"]) <= MAX_STEPS
    return int(read_checkpoint(ckpt_dir / "latest.pth")["step"])


def test_sigkill_at_random_moments_then_resume_completes(data_dir, tmp_path):
    out = tmp_path / "run"
    ckpt_dir = out / "checkpoints"
    latest = ckpt_dir / "latest.pth"
    rng = random.Random(0)
    steps = []

    # 1. kill at a random moment after the first checkpoint
    proc = _start(data_dir, out)
    _wait_for(latest.exists, proc, "the first checkpoint")
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    steps.append(_check_all_checkpoints(ckpt_dir))

    # 2. resume, then kill while a checkpoint is being written (a temporary file exists)
    def saving() -> bool:
        return any(ckpt_dir.glob("*.tmp"))

    proc = _start(data_dir, out, "--resume")
    _wait_for(lambda: _latest_step(latest) > steps[-1], proc, "progress after resuming", poll=0.02)
    _wait_for(saving, proc, "a checkpoint being written", poll=0.0002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    steps.append(_check_all_checkpoints(ckpt_dir))

    # 3. resume, kill again at a random moment
    proc = _start(data_dir, out, "--resume")
    _wait_for(lambda: _latest_step(latest) > steps[-1], proc, "progress after resuming", poll=0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    steps.append(_check_all_checkpoints(ckpt_dir))

    # 4. resume to the end
    proc = _start(data_dir, out, "--resume")
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, stderr[-3000:]
    assert f"resumed from {latest} at step {steps[-1]}" in stdout
    assert _check_all_checkpoints(ckpt_dir) == MAX_STEPS
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # each resume made progress
    assert not list(ckpt_dir.glob("latest.pth.*.tmp")), "temporaries of killed saves were left behind"
    with open(out / "logs" / "train.csv", newline="") as f:  # a row cut by a kill is not glued to the next
        header, *rows = list(csv.reader(f))
    assert all(len(r) <= len(header) for r in rows) and rows[-1][header.index("step")] == str(MAX_STEPS)


def _latest_step(path: Path) -> int:
    try:
        return int(read_checkpoint(path)["step"])
    except Exception:  # the file is being replaced right now: try again
        return -1


def test_sigint_saves_and_exits_cleanly_then_resume_finishes(data_dir, tmp_path):
    out = tmp_path / "run"
    latest = out / "checkpoints" / "latest.pth"
    proc = _start(data_dir, out, max_steps=100_000)
    _wait_for(latest.exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "interrupted: saved" in stdout
    step = int(read_checkpoint(latest)["step"])
    assert f"at step {step}" in stdout
    proc = _start(data_dir, out, "--resume", max_steps=step + 2)
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, stderr[-3000:]
    assert int(read_checkpoint(latest)["step"]) == step + 2


def test_sigkill_during_a_large_write_keeps_the_previous_checkpoint(tmp_path):
    """A write slow enough to be caught half-way: the file on disk is always a complete checkpoint."""
    path = tmp_path / "ck" / "latest.pth"
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from common.checkpoint import atomic_save
        blob = torch.randn(4_000_000)
        for step in range(1, 1000):
            atomic_save({{"family": "beta_vae_gan", "model": {{}}, "config": {{}}, "step": step, "blob": blob}}, {str(path)!r})
    """)
    rng = random.Random(1)
    for _ in range(3):  # kill three writes at different points: start again after each kill
        stale = set(path.parent.glob("*.tmp"))
        proc = subprocess.Popen([sys.executable, "-c", script], env=ENV)
        _STARTED.append(proc)

        def writing(stale=stale) -> bool:
            return path.exists() and bool(set(path.parent.glob("*.tmp")) - stale)

        _wait_for(writing, proc, "a write over an existing checkpoint")
        time.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = read_checkpoint(path)  # the previous complete checkpoint, or the new complete one
        assert ckpt["step"] >= 1 and ckpt["blob"].numel() == 4_000_000


# --------------------------------------------------------------------------------------------------
# Non-finite losses (in process)


def _trainer(data_dir: Path, out: Path, **kw) -> Trainer:
    cfg = tiny_train_config(data_dir, out, warmup_steps=1, val_images=1, lambda_adv=0.0, device="cpu", **kw)
    torch.manual_seed(0)
    return Trainer(BetaVAEGAN, BetaVAEGANConfig(N=8, M=8, disc_channels=4), cfg)


def _poison(trainer: Trainer, bad_steps) -> None:
    poison_loss(trainer, lambda: trainer.step in bad_steps)


def test_non_finite_losses_are_skipped_and_logged(data_dir, tmp_path, capsys):
    trainer = _trainer(data_dir, tmp_path, max_steps=6, max_nonfinite=3)
    _poison(trainer, bad_steps={1, 3})
    trainer.fit()
    printed = capsys.readouterr().out
    assert "step 1: non-finite loss skipped (1/3)" in printed
    assert "step 3: non-finite loss skipped (2/3)" in printed
    assert trainer.step == 6 and trainer.nonfinite == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_too_many_non_finite_losses_stop_the_run_without_touching_the_weights(data_dir, tmp_path):
    trainer = _trainer(data_dir, tmp_path, max_steps=20, max_nonfinite=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _poison(trainer, bad_steps=range(100))
    with pytest.raises(VAEGANError, match="3 non-finite losses"):
        trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
