"""Shipped checkpoints, found by family and quality or by identity.

``<family>/pretrained/*.pth`` are a family's default rate points (what ``codec.py`` and
``compare_models.py`` use unasked). A file in a subfolder (``pretrained/<name>/*.pth``) ships beside
them for what the defaults lack, e.g. a β release whose realism decoder was trained on an earlier
base: it is found by identity, so the files it writes decode without ``--model_path``, but it is
never picked by family or quality.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from common.checkpoint import load_model, read_checkpoint
from common.errors import CheckpointError, VAEGANError
from common.registry import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FAMILY = "beta_vae_gan"


def shipped(family: str) -> tuple[tuple[Path, bytes], ...]:
    """(path, model_id) of each shipped checkpoint of a family, lowest rate first (file name order)."""
    return tuple((path, mid) for path, mid, _ in _listing(ROOT, family, "*.pth"))


@cache
def _listing(root: Path, family: str, pattern: str) -> tuple[tuple[Path, bytes, bool], ...]:
    """(path, model_id, has a realism decoder) per file, each checkpoint read once. Cached per root,
    so a test that points ROOT elsewhere leaves no stale listing behind."""
    folder = root / family / "pretrained"
    out = []
    for path in sorted(folder.glob(pattern)):
        ckpt = read_checkpoint(path)
        out.append((path, bytes(ckpt["model_id"].tolist()), bool(ckpt.get("config", {}).get("realism"))))
    return tuple(out)


def default_checkpoint(family: str = DEFAULT_FAMILY, quality: int | None = None) -> Path:
    """Quality 1 is the lowest rate; None picks the middle one."""
    models = _require(family)
    if quality is None:
        return models[len(models) // 2][0]
    if not 1 <= quality <= len(models):
        raise CheckpointError(f"--quality must be between 1 and {len(models)} for {family}")
    return models[quality - 1][0]


def shipped_model(family: str = DEFAULT_FAMILY, quality: float | None = None):
    """The shipped model (a view, for families with several rates per checkpoint) at ``quality``.

    Quality 1 is the lowest rate over every rate point the family ships (VQ: its residual stages
    1..k of one checkpoint); a family that ships one variable-rate checkpoint takes any quality in
    its range. None picks the middle.
    """
    models = [load_model(path) for path, _ in _require(family)]
    if len(models) == 1 and models[0].quality_range() is not None:
        return models[0] if quality is None else at_quality(models[0], quality)
    points = [view for model in models for view, _ in model.rate_points()]
    if quality is None:
        return points[len(points) // 2]
    if quality != int(quality) or not 1 <= quality <= len(points):
        raise CheckpointError(f"--quality must be a whole number between 1 and {len(points)} for {family}")
    return points[int(quality) - 1]


def at_realism(model, realism: float):
    """``model`` decoding at ``realism`` (0 = faithful .. 1 = realistic); a clear error for a model
    without a realism decoder or a setting outside [0, 1]."""
    try:
        return model.at_realism(realism)
    except ValueError as exc:
        raise VAEGANError(f"--realism: {exc}") from None


def at_quality(model, quality: float):
    """``model`` coding at ``quality``: any value in a variable-rate model's range, else one of its
    rate points (1 = lowest); a clear error otherwise."""
    span = model.quality_range()
    if span is not None:
        if not span[0] <= quality <= span[1]:
            raise CheckpointError(f"--quality must be between {span[0]:g} and {span[1]:g} for this model")
        return model.at_quality(quality)
    points = [view for view, _ in model.rate_points()]
    if quality != int(quality) or not 1 <= quality <= len(points):
        raise CheckpointError(
            f"--quality must be a whole number between 1 and {len(points)} for this {model.family} checkpoint"
            if len(points) > 1
            else f"this {model.family} checkpoint codes one rate: leave out --quality"
        )
    return points[int(quality) - 1]


def _require(family: str) -> tuple[tuple[Path, bytes], ...]:
    models = shipped(family)
    if not models:
        raise CheckpointError(
            f"no shipped {family} checkpoints in {ROOT / family / 'pretrained'}; pass --model_path"
        )
    return models


def retired(model_id: bytes) -> dict | None:
    """The record of a checkpoint we shipped once and replaced (``<family>/pretrained/retired.json``)."""
    import json

    for family in FAMILIES:
        path = ROOT / family / "pretrained" / "retired.json"
        try:
            records = json.loads(path.read_text()) if path.is_file() else []
        except (OSError, ValueError):
            continue
        for record in records:
            if isinstance(record, dict) and record.get("model_id") == model_id.hex():
                return record
    return None


def release_checkout(record: dict) -> str:
    """The command that checks out the release a retired checkpoint shipped in (its code and files)."""
    commit = record["last_commit"]
    return f"git worktree add ../release-{commit} {commit}"


def companions(family: str) -> tuple[tuple[Path, bytes], ...]:
    """(path, model_id) of the files shipped in subfolders of a family's ``pretrained/``."""
    return tuple((path, mid) for path, mid, _ in _listing(ROOT, family, "*/*.pth"))


def _every_file(family: str) -> tuple[tuple[Path, bytes, bool], ...]:
    """The defaults, then the companions."""
    return _listing(ROOT, family, "*.pth") + _listing(ROOT, family, "*/*.pth")


def find_by_id(model_id: bytes) -> Path | None:
    for family in FAMILIES:
        for path, mid, _ in _every_file(family):
            if mid == model_id:
                return path
    return None


def with_realism(family: str) -> list[Path]:
    """The shipped files (defaults and companions) that carry a realism decoder."""
    return [path for path, _, realism in _every_file(family) if realism]
