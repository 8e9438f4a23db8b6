"""Checkpoints: atomic writes, safe loads (``weights_only=True``), model identity.

A checkpoint is a dict with ``family``, ``config`` (the model config dataclass as a dict),
``model`` (state dict, entropy tables included), ``model_id`` and, for training checkpoints,
``train_config``, optimizer states, step, epoch and RNG states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch

from common.errors import CheckpointError
from common.files import atomic_write
from common.registry import FAMILIES, model_class


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 (hex) over the names, shapes, dtypes and bytes of every tensor, in sorted order.

    Independent of the file format, so a digest pinned once holds across torch versions."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_id(state_dict: dict[str, torch.Tensor]) -> bytes:
    """8-byte identity written into every file: the first bytes of :func:`state_digest`."""
    return bytes.fromhex(state_digest(state_dict))[:8]


def atomic_save(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`common.files.atomic_write`: a process killed at any moment
    leaves ``path`` as it was or complete, never half written; temporaries of a killed earlier save
    of the same ``path`` are removed first (one process writes a given checkpoint: rank 0 only)."""
    atomic_write(path, lambda f: torch.save(obj, f), make_parents=True, clean_stale=True)


def model_state(model) -> dict:
    """The part of a checkpoint that describes the model: enough to compress and decompress."""
    model.update()
    state = model.state_dict()
    return {
        "family": model.family,
        "config": dataclasses.asdict(model.config),
        "model": state,
        "model_id": torch.tensor(list(model_id(model.coding_state())), dtype=torch.uint8),
        "weights_sha256": state_digest(state),
    }


def export_model(model, path: str | os.PathLike, half: bool = False, **extra) -> None:
    """Write a release checkpoint (no optimizer state), e.g. for shipping or tests.

    ``half=True`` rounds the weights to float16 *in the model first*, so the identity written into
    files is that of the weights a user will load, and stores them (and the tables) compactly.
    """
    if half:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                if t.is_floating_point():
                    t.copy_(t.half().float())
    state = model_state(model)
    if half:
        state["model"] = {
            k: v.half() if v.is_floating_point() else (v.int() if v.dtype == torch.int64 else v)
            for k, v in state["model"].items()
        }
    atomic_save(state | extra, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict without running any code from the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF, ...: a damaged or hostile file fails in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(ckpt, dict) or "family" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a VAE-GAN checkpoint (no family/model entries)")
    if not isinstance(ckpt["family"], str) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{path} is not a VAE-GAN checkpoint (malformed family/model entries)")
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path} is not a VAE-GAN checkpoint (no model config entry)")
    if ckpt["family"] not in FAMILIES:
        raise CheckpointError(f"{path}: unknown model family {ckpt['family']!r}")
    return ckpt


def build_model(family: str, config: dict):
    """Instantiate a family's model from its config dict; unknown keys are an error."""
    cls = model_class(family)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(config) - fields
    if unknown:
        raise CheckpointError(f"{family} config has unknown fields: {', '.join(sorted(unknown))}")
    try:
        return cls(cls.Config(**config))
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{family} config {config} does not build a model ({exc})") from None


def widen_state(state: dict, reference: dict) -> dict:
    """Cast compactly stored tensors (float16 weights, int32 tables) back to the model's dtypes."""
    return {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}


SMALL_SETTING = 4096  # config numbers up to this need no evidence in the weights


def _check_widths(path, ckpt: dict) -> None:
    """Refuse, before building anything, a config asking for a width no tensor in the file has.

    Every large setting of a real checkpoint (channels, codebook size) is some tensor's dimension;
    a tampered config asking for N = 10**6 would otherwise allocate terabytes before the weights
    are found not to fit.
    """
    dims = {d for t in ckpt["model"].values() if isinstance(t, torch.Tensor) for d in t.shape}
    largest = max(dims, default=0)
    for key, value in ckpt["config"].items():
        if isinstance(value, int) and not isinstance(value, bool) and value > max(SMALL_SETTING, largest):
            raise CheckpointError(
                f"{path}: config asks for {key}={value}, larger than any tensor in the file "
                f"(largest dimension {largest}): refusing to build it"
            )


def load_model(path: str | os.PathLike, expect_family: str | None = None, verify: bool = True):
    """Load a model ready for compress/decompress (eval mode, CPU, tables present)."""
    ckpt = read_checkpoint(path)
    family = ckpt["family"]
    if expect_family is not None and family != expect_family:
        raise CheckpointError(f"{path} holds a {family} model, but a {expect_family} model was expected")
    _check_widths(path, ckpt)
    model = build_model(family, ckpt["config"])
    try:
        model.load_state_dict(widen_state(ckpt["model"], model.state_dict()))
    except RuntimeError as exc:
        from common import zoo  # zoo reads checkpoints: imported here, where it is needed

        try:
            old = zoo.retired(bytes(ckpt["model_id"])) if "model_id" in ckpt else None
        except (TypeError, ValueError, RuntimeError):
            old = None
        if old is not None and old.get("code_changed"):
            raise CheckpointError(
                f"{path}: a checkpoint retired {old['retired']} (shipped as {old['file']}: {old['why']}); this "
                f"code cannot load it: use that release's (`{zoo.release_checkout(old)}`)"
            ) from None
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")  # the first differing key
        if len(detail) > 300:
            detail = detail[:300] + " ..."
        raise CheckpointError(f"{path}: weights do not fit the {family} config ({detail})") from None
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # a model with NaN weights writes files nothing can decode: refuse it here, not there
        raise CheckpointError(f"{path}: {len(bad)} tensors hold NaN or inf values (first: {bad[0]})")
    if verify and "model_id" in ckpt:
        try:
            stored = bytes(ckpt["model_id"])
        except (TypeError, ValueError, RuntimeError):
            raise CheckpointError(f"{path}: malformed model identity entry") from None
        actual = model_id(model.coding_state())
        if stored != actual:
            raise CheckpointError(
                f"{path}: weights were altered (stored identity {stored.hex()}, actual {actual.hex()})"
            )
        stored_digest = ckpt.get("weights_sha256")  # covers the decode-only modules the identity leaves out
        if stored_digest is not None and stored_digest != state_digest(model.state_dict()):
            raise CheckpointError(f"{path}: weights were altered (their sha256 differs from the one stored)")
    model.eval()
    if not model.ready_to_code():
        model.update()
    model.checkpoint_path = str(path)
    return model


# --------------------------------------------------------------------------------------------------
# Training checkpoints: the model part above, plus what an exact resume needs


def training_state(model, disc, opt_g, opt_d, train_config: dict, progress: dict) -> dict:
    """A training checkpoint: :func:`model_state`, the discriminator, both optimizers, the run's
    flags, and ``progress`` (step, epoch, position in the epoch, best validation loss, RNG streams)."""
    return model_state(model) | {
        "train_config": train_config,
        "disc": disc.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        **progress,
    }


def config_differences(model, ckpt: dict, path) -> dict:
    """``{field: (checkpoint, model)}`` where the checkpoint's model config differs from ``model``'s.

    Fields a checkpoint predates count at their defaults, so a run resumes under newer code."""
    if ckpt["family"] != model.family:
        raise CheckpointError(f"{path} holds a {ckpt['family']} model; this script trains {model.family}")
    given = dataclasses.asdict(model.config)
    saved = dataclasses.asdict(type(model.config)()) | dict(ckpt["config"])
    return {
        k: (saved.get(k), given.get(k))
        for k in sorted(set(saved) | set(given))
        if saved.get(k) != given.get(k)
    }


def restore_training(path: Path, model, disc, opt_g, opt_d) -> dict:
    """Load a training checkpoint into the run's modules and optimizers; returns it (progress, RNG).

    A resumed run is the same run: a checkpoint of another model config is refused."""
    if not path.exists():
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    ckpt = read_checkpoint(path)
    diff = config_differences(model, ckpt, path)
    if diff:
        raise CheckpointError(
            f"{path}: model config differs from the flags given (checkpoint vs flags: {diff}); "
            "resume with the run's own flags, or start a new run from it with --init_from"
        )
    if "opt_g" not in ckpt:
        raise CheckpointError(f"{path} has no optimizer state (a released model, not a training checkpoint)")
    model.load_state_dict(ckpt["model"])
    disc.load_state_dict(ckpt["disc"])
    opt_g.load_state_dict(ckpt["opt_g"])
    opt_d.load_state_dict(ckpt["opt_d"])
    return ckpt


def _decode_only(path, ckpt: dict) -> set[str]:
    """Keys of the checkpoint's weights outside its model's coding_state (decode-only modules)."""
    try:
        _check_widths(path, ckpt)
        source = build_model(ckpt["family"], ckpt["config"])
    except CheckpointError:
        return set()
    return set(source.state_dict()) - set(source.coding_state())


def _widened(path: Path, ckpt: dict, M: int, say) -> dict:
    """The checkpoint's weights with a latent of M channels, decoding as before (``widened``)."""
    narrow = build_model(ckpt["family"], ckpt["config"])
    try:
        narrow.load_state_dict(widen_state(ckpt["model"], narrow.state_dict()))
        wide = narrow.widened(M)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"--init_from {path}: cannot widen its latent to {M} channels ({exc})"
        ) from None
    say(
        f"--init_from: latent widened from {narrow.config.M} to {M} channels: the model decodes as "
        "before and the new channels start unused"
    )
    return wide.state_dict()


def init_weights(path: Path, model, disc, say=print) -> None:
    """``--init_from``: a checkpoint's weights, fresh optimizers and step (fine-tuning).

    Settings that leave the weights' shapes alone may differ (said); parameters the checkpoint lacks
    (e.g. the gains that turn a fixed-rate model into a variable-rate one, a realism decoder) keep
    their initial values and are named; decode-only modules the model lacks (a realism decoder) are
    left out, and said; anything else must fit. A discriminator that does not fit (another width or
    condition) starts afresh."""
    ckpt = read_checkpoint(path)
    state = ckpt["model"]
    if ckpt["family"] != model.family:  # a family built to start from another's (or a clear refusal)
        state = model.adopt_weights(ckpt["family"], ckpt["config"], state, path)
        diff = {"family": (ckpt["family"], model.family)}
    else:
        diff = config_differences(model, ckpt, path)
        if "M" in diff and hasattr(model, "widened") and diff["M"][0] < model.config.M:
            state = _widened(path, ckpt, model.config.M, say)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        dropped = _decode_only(path, ckpt) & set(unexpected) if unexpected else set()
        if set(unexpected) - dropped:
            raise RuntimeError(f"unexpected {unexpected}")
    except RuntimeError:
        raise CheckpointError(
            f"--init_from {path}: its weights do not fit the model the flags describe "
            f"(checkpoint vs flags: {diff})"
        ) from None
    if "disc" in ckpt:
        try:
            disc.load_state_dict(ckpt["disc"])
        except RuntimeError:
            say("--init_from: the checkpoint's discriminator does not fit; it starts fresh")
    if diff:
        say(f"--init_from: model settings changed from the checkpoint's: {diff}")
    if dropped:  # e.g. a realism decoder, which only fits the decoder it was trained on
        modules = sorted({k.split(".")[0] for k in dropped})
        say(f"--init_from: decode-only modules this model does not have are left out: {', '.join(modules)}")
    if missing:
        say(f"--init_from: not in the checkpoint, so initialised fresh: {', '.join(missing)}")
    say(f"initialised weights from {path} (step {ckpt.get('step', '?')}); optimizer and step start fresh")
