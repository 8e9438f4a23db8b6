"""Classical codecs through their libraries, swept over quality and scored like our models.

Every point is real bytes from the library's encoder, decoded by the same library, averaged over
images per quality setting (CompressAI's convention), and written in CompressAI's JSON schema.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.datasets import load_image
from common.metrics import MetricError, ms_ssim, psnr


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    description: str
    qualities: tuple[int, ...]
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]


def _pillow_encoder(fmt: str, **options) -> Callable[[np.ndarray, int], bytes]:
    def encode(image: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=fmt, quality=quality, **options)
        return buf.getvalue()

    return encode


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


CODECS: dict[str, ClassicalCodec] = {
    "jpeg420": ClassicalCodec(
        "Pillow JPEG 4:2:0",
        "libjpeg via Pillow, 4:2:0 chroma, optimized Huffman",
        (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        _pillow_encoder("JPEG", subsampling="4:2:0", optimize=True),
        _pillow_decode,
    ),
    "jpeg444": ClassicalCodec(
        "Pillow JPEG 4:4:4",
        "libjpeg via Pillow, 4:4:4 chroma, optimized Huffman",
        (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        _pillow_encoder("JPEG", subsampling="4:4:4", optimize=True),
        _pillow_decode,
    ),
}


def sweep(codec: ClassicalCodec, files: list[Path], progress: bool = True) -> dict:
    """One point per quality: bpp from the encoded bytes, metrics on the decoded image."""
    images = [load_image(f)[0] for f in files]
    points = []
    for q in tqdm(codec.qualities, desc=codec.name, disable=not progress):
        rows = []
        for image in images:
            t0 = time.perf_counter()
            data = codec.encode(image, q)
            t1 = time.perf_counter()
            decoded = codec.decode(data)
            t2 = time.perf_counter()
            try:
                m = ms_ssim(image, decoded)
            except MetricError:
                m = float("nan")
            rows.append(
                {
                    "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                    "psnr-rgb": psnr(image, decoded),
                    "ms-ssim-rgb": m,
                    "encoding_time": t1 - t0,
                    "decoding_time": t2 - t1,
                }
            )
        points.append({"quality": q, **{k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}})
    points.sort(key=lambda p: p["bpp"])
    return {
        "name": codec.name,
        "description": f"{codec.description}; {len(files)} images",
        "results": {k: [p[k] for p in points] for k in points[0]},
    }
