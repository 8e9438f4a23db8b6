"""Image <-> file: what the codec command line, evaluation and comparison all call.

``compress_image`` pads nothing itself (the model does) and writes every byte through
``common.bitstream``; ``decompress_bytes`` checks that the file was written by the model at hand
before decoding anything, and finds the shipped checkpoint from the header when no model is given.

Both refuse images whose padded size exceeds a pixel limit (``max_pixels``, else $VAEGAN_MAX_PIXELS,
else 64 MP), so a hostile file cannot make the decoder allocate more than that: the declared size is
checked before any model is loaded or any stream decoded.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from common import zoo
from common.bitstream import (
    HEAD_BYTES,
    env_limit,
    file_length,
    pack,
    padded_pixels,
    pixel_limit,
    read_header,
    unpack,
)
from common.checkpoint import load_model
from common.datasets import to_tensor, to_uint8
from common.errors import CorruptFileError, ImageError, ModelMismatchError, VAEGANError
from common.metrics import file_bpp
from common.registry import family_code, family_name

MAX_MEMORY_ENV = "VAEGAN_MAX_MEMORY"


def memory_limit() -> int:
    """Bytes coding one image may take: ``$VAEGAN_MAX_MEMORY``, else half of this machine's memory."""
    half = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    return env_limit(MAX_MEMORY_ENV, half, "bytes")


def _check_memory(model, size: tuple[int, int], error=VAEGANError) -> None:
    need, limit = model.memory_bytes(size), memory_limit()
    if need > limit:
        raise error(
            f"a {size[0]}x{size[1]} image needs about {need / 2**30:.1f} GiB to code with the "
            f"{model.family} model, over the limit of {limit / 2**30:.1f} GiB (half of this machine's "
            f"memory unless ${MAX_MEMORY_ENV} says otherwise); raise it if the memory is there"
        )


def compress_image(model, image: np.ndarray, max_pixels: int | None = None) -> bytes:
    """uint8 (H, W, 3) -> the bytes of a complete compressed file."""
    size = tuple(image.shape[:2])
    limit = pixel_limit(max_pixels)
    if padded_pixels(size, model.pad_multiple) > limit:
        raise ImageError(
            f"image of {size[0]}x{size[1]} pixels is over the limit of {limit} pixels once padded "
            f"to a multiple of {model.pad_multiple} (raise it with max_pixels or $VAEGAN_MAX_PIXELS)"
        )
    _check_memory(model, size, ImageError)
    x = to_tensor(image).to(next(model.parameters()).device)
    with torch.no_grad():
        compressed = model.compress(x)
    return pack(compressed, family_code(model.family), model.identity())


RATE_TOLERANCE = 0.03  # --bpp: relative distance to the target that ends the search


def check_rate_control(model) -> None:
    """A target bpp needs a rate to search: a variable-rate model."""
    if model.quality_range() is None:
        raise VAEGANError(
            f"--bpp needs a variable-rate model; this {model.family} checkpoint codes fixed rates "
            "(choose one with --quality)"
        )


def compress_to_bpp(
    model,
    image: np.ndarray,
    target_bpp: float,
    tolerance: float = RATE_TOLERANCE,
    max_pixels: int | None = None,
) -> tuple[bytes, float, str | None]:
    """Compress at the quality whose real file is nearest ``target_bpp``: (bytes, quality, note).

    Searches a variable-rate model's quality (the file's own resolution, thousandths) by regula
    falsi on log(bpp), which is nearly linear in quality, with bisection as a safeguard; it stops as
    soon as a file is within ``tolerance`` of the target. Outside the model's range the nearest end
    is taken and the note says so. Every probe is a complete encode: what is measured is what is sent.
    """
    check_rate_control(model)
    if not target_bpp > 0:
        raise VAEGANError(f"--bpp must be positive, not {target_bpp}")
    lo_q, hi_q = model.quality_range()
    scale = model.quality_scale  # the quality resolution the file stores
    tried: dict[int, bytes] = {}

    def bpp_at(code: int) -> float:
        if code not in tried:
            tried[code] = compress_image(model.at_quality(code / scale), image, max_pixels)
        return file_bpp(len(tried[code]), *image.shape[:2])

    def nearest() -> tuple[bytes, float]:
        code = min(tried, key=lambda c: abs(math.log(bpp_at(c) / target_bpp)))
        return tried[code], code / scale

    lo, hi = round(lo_q * scale), round(hi_q * scale)
    b_lo, b_hi = bpp_at(lo), bpp_at(hi)
    if target_bpp <= b_lo * (1 + tolerance):
        note = (
            None
            if target_bpp >= b_lo * (1 - tolerance)
            else f"{b_lo:.4f} bpp is the lowest rate this model reaches"
        )
        return tried[lo], lo / scale, note
    if target_bpp >= b_hi * (1 - tolerance):
        note = (
            None
            if target_bpp <= b_hi * (1 + tolerance)
            else f"{b_hi:.4f} bpp is the highest rate this model reaches"
        )
        return tried[hi], hi / scale, note
    goal = math.log(target_bpp)
    for i in range(40):
        if hi - lo <= 1:
            break
        f_lo, f_hi = math.log(b_lo) - goal, math.log(b_hi) - goal
        if i % 3 == 2:  # every third probe bisects, so a badly curved stretch still shrinks fast
            mid = (lo + hi) // 2
        else:
            mid = round(lo - f_lo * (hi - lo) / (f_hi - f_lo)) if f_hi != f_lo else (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        b_mid = bpp_at(mid)
        if abs(b_mid / target_bpp - 1) <= tolerance:
            break
        if b_mid < target_bpp:
            lo, b_lo = mid, b_mid
        else:
            hi, b_hi = mid, b_mid
    data, quality = nearest()
    reached = file_bpp(len(data), *image.shape[:2])
    if abs(reached / target_bpp - 1) > tolerance:
        return (
            data,
            quality,
            f"{reached:.4f} bpp is the nearest rate this model reaches to {target_bpp:g} bpp",
        )
    return data, quality, None


def describe(family: str | None, mid: bytes, path: str | None = None) -> str:
    """'beta_vae_gan model 1a2b... (its file)': a shipped checkpoint is named even when no path is given."""
    path = path or zoo.find_by_id(mid)
    where = f" ({path})" if path else ""
    return f"{family or 'unknown family'} model {mid.hex()}{where}"


def model_for(data: bytes, model=None):
    """The model that can decode ``data``: the one given (checked) or a shipped one (looked up)."""
    header = read_header(data)
    family = family_name(header.family_code)
    if family is None:
        raise CorruptFileError(f"file names an unknown model family (code {header.family_code})")
    if model is None:
        path = zoo.find_by_id(header.model_id)
        old = zoo.retired(header.model_id) if path is None else None
        if old is not None:
            commit = old["last_commit"]
            if old.get("code_changed"):  # the model's architecture changed too: that release's code
                how = f"decode it with that release: `{zoo.release_checkout(old)}`, then its scripts/codec.py decompress"
            else:
                how = f"decode it with that release's file: `git show {commit}:{old['file']} > old.pth`, then --model_path old.pth"
            raise ModelMismatchError(
                f"file was written by {old['file']} as shipped up to commit {commit} (retired "
                f"{old['retired']}: {old['why']}); {how}"
            )
        if path is None:
            raise ModelMismatchError(
                f"file was written by {describe(family, header.model_id)}, which is not a shipped "
                "checkpoint; pass the checkpoint that wrote it with --model_path"
            )
        shipped = load_model(path)
        if shipped.family != family:
            raise CorruptFileError(
                f"file is damaged: its family byte says {family}, but its model identity is that of "
                f"{path} ({shipped.family})"
            )
        return shipped
    if model.family != family or model.identity() != header.model_id:
        raise ModelMismatchError(
            f"file was written by {describe(family, header.model_id)}, but the checkpoint given is "
            f"{describe(model.family, model.identity(), model.checkpoint_path)}"
        )
    return model


def _check_declared_size(size: tuple[int, int], multiple: int, limit: int) -> None:
    if padded_pixels(size, multiple) > limit:
        raise CorruptFileError(
            f"file declares an image of {size[0]}x{size[1]} pixels, over the decoding limit of {limit} "
            f"pixels once padded to a multiple of {multiple} (raise it with max_pixels or "
            "$VAEGAN_MAX_PIXELS if the file is trusted)"
        )


def read_compressed(path: str | os.PathLike) -> bytes:
    """A compressed file's bytes, reading no more than its header says a valid file holds.

    A FIFO, a device (``/dev/zero``), a folder or a large foreign file is refused after at most
    :data:`common.bitstream.HEAD_BYTES` bytes, never read to its end.
    """
    path = Path(path)
    if not path.exists():
        raise VAEGANError(f"input not found: {path}")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise VAEGANError(f"expected a compressed file, but {path} is {kind}")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            try:
                total = file_length(head)
            except CorruptFileError as exc:
                raise CorruptFileError(f"{path}: {exc}") from None
            data = head + f.read(max(0, total - len(head)) + 1)
    except OSError as exc:
        raise VAEGANError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > total:
        raise CorruptFileError(f"{path}: file has unexpected trailing bytes or bad stream lengths")
    return data


@contextlib.contextmanager
def one_thread():
    """Decode on one CPU thread: a convolution split over threads sums in another order, and the
    float32 results then differ in the last bits, enough to move a few pixels by one level. The same
    file must give the same pixels on 1 and on 16 threads (tests/robustness/test_determinism.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _realism_hint(model) -> str:
    """Where a model has no realism decoder: the shipped files that have one, to compress with."""
    if getattr(getattr(model, "config", None), "realism", False):
        return ""
    paths = zoo.with_realism(model.family)
    if not paths:
        return ""
    return f"; files compressed with --model_path {paths[0].relative_to(zoo.ROOT)} decode at any realism"


def decompress_bytes(
    data: bytes, model=None, max_pixels: int | None = None, realism: float | None = None
) -> np.ndarray:
    """Bytes of a compressed file -> uint8 (H, W, 3). Raises the project's errors, nothing else.

    The declared size is checked against ``max_pixels`` (see :func:`common.bitstream.pixel_limit`)
    before a model is loaded or a stream decoded. ``realism`` (0 = faithful .. 1 = realistic) picks
    the decode of a model with a realism decoder; None: the model's (or view's) own setting.
    """
    limit = pixel_limit(max_pixels)
    size = read_header(data).size
    _check_declared_size(size, 1, limit)
    model = model_for(data, model)
    if realism is not None:
        try:
            model = zoo.at_realism(model, realism)
        except VAEGANError as exc:
            where = f" ({model.checkpoint_path})" if model.checkpoint_path else ""
            raise VAEGANError(f"{exc}{where}{_realism_hint(model)}") from None
    _check_declared_size(size, model.pad_multiple, limit)
    _check_memory(model, size)
    _, compressed = unpack(data)
    try:
        with one_thread():
            x_hat = model.decompress(compressed)
    except (ValueError, RuntimeError, IndexError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptFileError(f"file is damaged: its streams do not decode ({first})") from None
    if tuple(x_hat.shape[-2:]) != tuple(compressed.size):
        raise CorruptFileError("file is damaged: decoded size differs from the declared size")
    if not torch.isfinite(x_hat).all():
        raise CorruptFileError("file is damaged: its latents decode to non-finite pixels")
    return to_uint8(x_hat)
