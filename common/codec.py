"""Image <-> file: what the codec command line, evaluation and comparison all call.

``compress_image`` pads nothing itself (the model does) and writes every byte through
``common.bitstream``; ``decompress_bytes`` checks that the file was written by the model at hand
before decoding anything, and finds the shipped checkpoint from the header when no model is given.
"""

from __future__ import annotations

import numpy as np
import torch

from common import zoo
from common.bitstream import pack, read_header, unpack
from common.checkpoint import load_model
from common.datasets import to_tensor, to_uint8
from common.errors import CorruptFileError, ModelMismatchError
from common.registry import family_code, family_name


def compress_image(model, image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> the bytes of a complete compressed file."""
    x = to_tensor(image).to(next(model.parameters()).device)
    with torch.no_grad():
        compressed = model.compress(x)
    return pack(compressed, family_code(model.family), model.identity())


def describe(family: str | None, mid: bytes, path: str | None = None) -> str:
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
        if path is None:
            raise ModelMismatchError(
                f"file was written by {describe(family, header.model_id)}, which is not a shipped "
                "checkpoint; pass the checkpoint that wrote it with --model_path"
            )
        return load_model(path)
    if model.family != family or model.identity() != header.model_id:
        raise ModelMismatchError(
            f"file was written by {describe(family, header.model_id)}, but the checkpoint given is "
            f"{describe(model.family, model.identity(), model.checkpoint_path)}"
        )
    return model


def decompress_bytes(data: bytes, model=None) -> np.ndarray:
    """Bytes of a compressed file -> uint8 (H, W, 3). Raises the project's errors, nothing else."""
    model = model_for(data, model)
    _, compressed = unpack(data)
    try:
        x_hat = model.decompress(compressed)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise CorruptFileError(f"file is damaged: its streams do not decode ({exc})") from None
    if tuple(x_hat.shape[-2:]) != tuple(compressed.size):
        raise CorruptFileError("file is damaged: decoded size differs from the declared size")
    return to_uint8(x_hat)
