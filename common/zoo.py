"""Shipped checkpoints: ``<family>/pretrained/*.pth``, found by family and quality or by identity."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from common.checkpoint import read_checkpoint
from common.errors import CheckpointError
from common.registry import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FAMILY = "beta_vae_gan"


@cache
def shipped(family: str) -> tuple[tuple[Path, bytes], ...]:
    """(path, model_id) of each shipped checkpoint of a family, lowest rate first (file name order)."""
    folder = ROOT / family / "pretrained"
    out = []
    for path in sorted(folder.glob("*.pth")):
        ckpt = read_checkpoint(path)
        out.append((path, bytes(ckpt["model_id"].tolist())))
    return tuple(out)


def default_checkpoint(family: str = DEFAULT_FAMILY, quality: int | None = None) -> Path:
    """Quality 1 is the lowest rate; None picks the middle one."""
    models = shipped(family)
    if not models:
        raise CheckpointError(
            f"no shipped {family} checkpoints in {ROOT / family / 'pretrained'}; pass --model_path"
        )
    if quality is None:
        return models[len(models) // 2][0]
    if not 1 <= quality <= len(models):
        raise CheckpointError(f"--quality must be between 1 and {len(models)} for {family}")
    return models[quality - 1][0]


def find_by_id(model_id: bytes) -> Path | None:
    for family in FAMILIES:
        for path, mid in shipped(family):
            if mid == model_id:
                return path
    return None
