"""Classical codecs through their libraries, swept over quality and scored like our models.

Every point is real bytes from the library's encoder, decoded by the same library, averaged over
images per quality setting (CompressAI's convention), and written in CompressAI's JSON schema.
Scores come from the same functions as ``evaluate.py`` (:mod:`common.metrics`), patch FID/KID
included, against the same cached features of the originals (:class:`common.evaluation.ReferenceFeatures`).

Each codec's ``qualities`` run from lowest to highest quality, whatever the library's knob is
(JPEG XL's distance falls as quality rises; JPEG 2000's knob is a target bpp), so encoded sizes grow
along the list. Every encoder runs single-threaded so encoding times compare across codecs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.datasets import file_fingerprints, load_image
from common.errors import VAEGANError
from common.evaluation import finish_patch_fid
from common.files import json_digest, write_json
from common.metrics import PatchFID, file_bpp, score_image

CACHE_VERSION = 2  # bump when scoring changes, so every cached sweep is recomputed
BASE_METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ssim-rgb", "encoding_time", "decoding_time")
FID_METRICS = ("fid", "kid", "kid_std", "num_patches")


@dataclass(frozen=True)
class ClassicalCodec:
    """One library codec: ``encode(image, quality) -> bytes`` and ``decode(bytes) -> image`` (uint8 RGB).

    ``library()`` names the library and its version, or raises VAEGANError with the install hint
    when it is missing, so nothing fails at import time.
    """

    name: str
    settings: str
    qualities: tuple[float, ...]
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    library: Callable[[], str]

    @property
    def description(self) -> str:
        """Settings plus library versions: it goes into every JSON and every cache key."""
        return f"{self.settings}; {self.library()}"


# --------------------------------------------------------------------------------------------
# Pillow (JPEG, WebP, JPEG 2000, AVIF)


def _pillow_library(feature: str, label: str) -> Callable[[], str]:
    def library() -> str:
        import PIL
        from PIL import features

        if not features.check(feature):
            raise VAEGANError(
                f"this Pillow ({PIL.__version__}) was built without {label} support; "
                f"`pip install -U 'pillow>=11.3'` (wheels include it)"
            )
        return f"Pillow {PIL.__version__}, {label} {features.version(feature)}"

    return library


def _avif_library() -> str:
    text = _pillow_library("avif", "libavif")()
    from PIL import _avif

    return f"{text} ({_avif.codec_versions()})"


def _pillow_encoder(fmt: str, quality_arg: Callable[[float], dict], **options) -> Callable:
    def encode(image: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=fmt, **quality_arg(quality), **options)
        return buf.getvalue()

    return encode


def _pillow_quality(q: float) -> dict:
    return {"quality": int(q)}


def _jpeg2000_rate(target_bpp: float) -> dict:
    """OpenJPEG's rate is a compression ratio against the raw 24 bpp image."""
    return {"quality_mode": "rates", "quality_layers": [24.0 / target_bpp]}


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


# --------------------------------------------------------------------------------------------
# JPEG XL (imagecodecs / libjxl)


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError as exc:
        raise VAEGANError("JPEG XL needs imagecodecs: `pip install 'imagecodecs>=2024.1.1'`") from exc
    if not imagecodecs.JPEGXL.available:
        raise VAEGANError(
            f"imagecodecs {imagecodecs.__version__} has no JPEG XL codec; `pip install -U imagecodecs`"
        )
    return imagecodecs


def _jpegxl_library() -> str:
    ic = _imagecodecs()
    return f"imagecodecs {ic.__version__}, {ic.jpegxl_version()}"


JPEGXL_EFFORT = 7


def _jpegxl_encode(image: np.ndarray, distance: float) -> bytes:
    return bytes(_imagecodecs().jpegxl_encode(image, distance=distance, effort=JPEGXL_EFFORT, numthreads=1))


def _jpegxl_decode(data: bytes) -> np.ndarray:
    return np.asarray(_imagecodecs().jpegxl_decode(data, numthreads=1))


# --------------------------------------------------------------------------------------------
# HEVC in HEIF (pillow-heif / libheif + x265, the encoder BPG uses)

HEVC_CHROMA = "444"
HEVC_PRESET = "slow"  # libheif's default x265 preset, stated so it cannot drift silently


def _pillow_heif():
    try:
        import pillow_heif
    except ImportError as exc:
        raise VAEGANError("HEVC (HEIC) needs pillow-heif: `pip install 'pillow-heif>=0.18'`") from exc
    if not pillow_heif.libheif_info().get("HEIF"):
        raise VAEGANError(
            f"pillow-heif {pillow_heif.__version__} has no HEVC encoder (x265) in its libheif; "
            "install the PyPI wheel of pillow-heif, which bundles x265"
        )
    return pillow_heif


def _hevc_library() -> str:
    ph = _pillow_heif()
    info = ph.libheif_info()
    return (
        f"pillow-heif {ph.__version__}, libheif {info['libheif']}, {info['HEIF']}, "
        f"decoder {', '.join(info.get('decoders', {}).values()) or 'libheif'}"
    )


def _hevc_encode(image: np.ndarray, quality: float) -> bytes:
    ph = _pillow_heif()
    buf = io.BytesIO()
    heif = ph.from_bytes("RGB", (image.shape[1], image.shape[0]), np.ascontiguousarray(image).tobytes())
    heif.save(
        buf,
        quality=int(quality),
        chroma=HEVC_CHROMA,
        enc_params={"preset": HEVC_PRESET, "x265:pools": "1", "x265:frame-threads": "1"},
    )
    return buf.getvalue()


def _hevc_decode(data: bytes) -> np.ndarray:
    heif = _pillow_heif().open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"))


# --------------------------------------------------------------------------------------------

_JPEG_QUALITIES = (1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)

CODECS: dict[str, ClassicalCodec] = {
    "jpeg420": ClassicalCodec(
        "Pillow JPEG 4:2:0",
        "libjpeg via Pillow, 4:2:0 chroma, optimized Huffman, quality sweep",
        _JPEG_QUALITIES,
        _pillow_encoder("JPEG", _pillow_quality, subsampling="4:2:0", optimize=True),
        _pillow_decode,
        _pillow_library("jpg", "libjpeg"),
    ),
    "jpeg444": ClassicalCodec(
        "Pillow JPEG 4:4:4",
        "libjpeg via Pillow, 4:4:4 chroma, optimized Huffman, quality sweep",
        _JPEG_QUALITIES,
        _pillow_encoder("JPEG", _pillow_quality, subsampling="4:4:4", optimize=True),
        _pillow_decode,
        _pillow_library("jpg", "libjpeg"),
    ),
    "webp": ClassicalCodec(
        "WebP",
        "libwebp via Pillow, lossy, method=6 (slowest, best), 4:2:0 chroma (lossy WebP has no other), "
        "quality sweep",
        (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
        _pillow_encoder("WEBP", _pillow_quality, method=6),
        _pillow_decode,
        _pillow_library("webp", "libwebp"),
    ),
    "jpeg2000": ClassicalCodec(
        "JPEG 2000",
        "OpenJPEG via Pillow, raw codestream (.j2k), irreversible 9/7 wavelet, colour transform (mct=1), "
        "one quality layer at rate 24/bpp; sweep over target bpp",
        (0.04, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0),
        _pillow_encoder("JPEG2000", _jpeg2000_rate, no_jp2=True, irreversible=True, mct=1),
        _pillow_decode,
        _pillow_library("jpg_2000", "OpenJPEG"),
    ),
    "avif": ClassicalCodec(
        "AVIF",
        "libavif via Pillow, AV1, speed=6 (Pillow's default), 4:4:4 chroma, full range, 1 thread, "
        "quality sweep",
        (0, 10, 20, 30, 40, 45, 50, 55, 60, 70, 80),
        _pillow_encoder("AVIF", _pillow_quality, subsampling="4:4:4", speed=6, max_threads=1),
        _pillow_decode,
        _avif_library,
    ),
    "jpegxl": ClassicalCodec(
        "JPEG XL",
        f"libjxl via imagecodecs, VarDCT, effort={JPEGXL_EFFORT}, 1 thread; sweep over Butteraugli "
        "distance from 15 down (quality = distance; above ~15 libjxl's sizes stop falling monotonically)",
        (15.0, 11.0, 8.0, 6.0, 4.5, 3.5, 2.5, 2.0, 1.5, 1.0),
        _jpegxl_encode,
        _jpegxl_decode,
        _jpegxl_library,
    ),
    "hevc": ClassicalCodec(
        "HEVC (HEIC, x265)",
        f"x265 in HEIF via pillow-heif/libheif (BPG's encoder), preset={HEVC_PRESET}, "
        f"{HEVC_CHROMA[0]}:{HEVC_CHROMA[1]}:{HEVC_CHROMA[2]} chroma, 1 thread, quality sweep",
        (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55),
        _hevc_encode,
        _hevc_decode,
        _hevc_library,
    ),
}


def get_codec(name: str) -> ClassicalCodec:
    """The codec called ``name``; VAEGANError listing the known names otherwise."""
    if name not in CODECS:
        raise VAEGANError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")
    return CODECS[name]


def spread(items: Sequence, n: int | None) -> list:
    """At most ``n`` of ``items``, evenly spaced from the first to the last (all when n is None)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n == 1:
        return items[-1:]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def available_codecs() -> list[str]:
    """Names of the codecs whose libraries are installed here."""
    names = []
    for name, codec in CODECS.items():
        try:
            codec.library()
        except VAEGANError:
            continue
        names.append(name)
    return names


def encode_decode(name: str, image: np.ndarray, quality: float) -> tuple[bytes, np.ndarray]:
    """One image at one quality: (the encoded bytes, the decoded uint8 H x W x 3 image)."""
    codec = get_codec(name)
    codec.library()  # a missing library fails here with its install hint
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise VAEGANError(f"encode_decode takes an RGB uint8 image H x W x 3, got shape {image.shape}")
    data = codec.encode(image, quality)
    return data, _decode_checked(codec, data, image.shape)


def _decode_checked(codec: ClassicalCodec, data: bytes, shape: tuple) -> np.ndarray:
    decoded = np.ascontiguousarray(codec.decode(data), dtype=np.uint8)
    if decoded.shape != tuple(shape):
        raise VAEGANError(f"{codec.name} decoded a {decoded.shape} image from a {tuple(shape)} original")
    return decoded


def _metric_names(lpips_model, fid_reference) -> list[str]:
    """What a sweep with these models measures; LPIPS and FID carry their variant."""
    names = list(BASE_METRICS)
    if lpips_model is not None:
        rand = "-randomtrunk" if getattr(lpips_model, "pnet_rand", False) else ""
        names.append(f"lpips:{getattr(lpips_model, 'pnet_type', '?')}{rand}")
    if fid_reference is not None:
        names.append(f"fid:patch{fid_reference.patch_size}")
    return names


def sweep(
    codec: ClassicalCodec | str,
    files: list[Path],
    progress: bool = True,
    lpips_model=None,
    fid_reference=None,
    done: dict | None = None,
    on_point: Callable[[dict], None] | None = None,
    distortion: bool = True,
) -> dict:
    """One point per quality: bpp from the encoded bytes, metrics on the decoded image.

    ``lpips_model`` (from :func:`common.metrics.load_lpips`) adds ``lpips``; ``fid_reference``
    (a :class:`common.evaluation.ReferenceFeatures` for these files) adds patch ``fid``/``kid``
    per quality, exactly as ``evaluate_checkpoint`` does for a checkpoint. ``done`` maps qualities
    to points already measured (they are not recomputed); ``on_point`` sees each new point.
    ``distortion=False`` leaves out PSNR, MS-SSIM and SSIM (a sweep that only adds LPIPS or FID).
    """
    codec = get_codec(codec) if isinstance(codec, str) else codec
    description = codec.description  # raises the install hint before any work
    images = []
    for f in files:
        try:
            images.append((Path(f), load_image(f)[0]))
        except VAEGANError as exc:
            tqdm.write(f"skipped: {exc}")
    if not images:
        raise VAEGANError("no image could be read for the codec sweep")
    points = []
    for q in tqdm(codec.qualities, desc=codec.name, disable=not progress):
        if done and q in done:
            points.append(done[q])
            continue
        patch_fid = None
        if fid_reference is not None:
            patch_fid = PatchFID(features=fid_reference.features, patch_size=fid_reference.patch_size)
        rows = []
        for path, image in images:
            t0 = time.perf_counter()
            data = codec.encode(image, q)
            t1 = time.perf_counter()
            decoded = _decode_checked(codec, data, image.shape)
            t2 = time.perf_counter()
            row = {"bpp": file_bpp(len(data), *image.shape[:2])}
            scores = score_image(image, decoded, lpips_model, distortion)
            row |= {k: v for k, v in scores.items() if k != "lpips"}
            row |= {"encoding_time": t1 - t0, "decoding_time": t2 - t1}
            row |= {k: v for k, v in scores.items() if k == "lpips"}
            if patch_fid is not None:
                patch_fid.update(image, decoded, fid_reference.original_features(path, image))
            rows.append(row)
        point = {"quality": q, **{k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}}
        if patch_fid is not None:
            point.update(finish_patch_fid(patch_fid, fid_reference))
        points.append(point)
        if on_point is not None:
            on_point(point)
    points.sort(key=lambda p: p["bpp"])
    keys = [k for k in points[0] if all(k in p for p in points)]
    extra = ""
    if "fid" in keys:
        extra = f"; FID/KID on {points[0]['num_patches']} patches of {fid_reference.patch_size} px (HiFiC protocol)"
    return {
        "name": codec.name,
        "description": f"{description}; {len(images)} images{extra}",
        "results": {k: [p[k] for p in points] for k in keys},
    }


def sweep_key(codec: ClassicalCodec, files: list[Path]) -> str:
    """sha256 over what decides the numbers: codec, settings, library versions, qualities, the files."""
    key = {
        "version": CACHE_VERSION,
        "codec": codec.name,
        "description": codec.description,
        "qualities": list(codec.qualities),
        "files": file_fingerprints(files),
    }
    return json_digest(key)


def sweep_cached(
    name: str,
    files: list[Path],
    cache_dir: Path,
    progress: bool = True,
    lpips_model=None,
    fid_reference=None,
    published: Sequence[str | os.PathLike] = (),
    max_points: int | None = None,
) -> dict:
    """:func:`sweep`, read from ``<cache_dir>/<name>.json`` when nothing that decides its numbers changed.

    The cache holds the sweep key (:func:`sweep_key`) and the metrics measured; it is used when
    the key matches and every requested metric (LPIPS net, FID patch size included) was measured.
    A record with the same key that lacks some metrics is completed: only those are measured
    (an LPIPS column costs minutes, the FID columns an hour) and merged point by point, after
    checking that the files are byte for byte the same size. Otherwise the sweep runs again and
    replaces it (written atomically). While a sweep runs, each finished quality is kept in
    ``<name>.partial.json``, so an interrupted sweep resumes where it stopped (same key and
    metrics), which matters for long FID sweeps on a busy machine.

    The result names its key and metrics under ``"sweep"``, so a published ``<name>.json`` (what
    ``scripts/run_baselines.py`` writes, e.g. ``results/kodak/``) in one of the ``published``
    folders is as good as the cache when they match: reproducing a committed comparison then
    skips an hour of codec FID sweeps, and a changed library version or image byte still reruns.
    ``max_points`` sweeps only that many of the codec's qualities, evenly spread (:func:`spread`).
    """
    codec = get_codec(name)
    if max_points is not None:  # fewer qualities: another key, so never mixed with the full sweep
        codec = dataclasses.replace(codec, qualities=tuple(spread(codec.qualities, max_points)))
    key = sweep_key(codec, files)
    wanted = _metric_names(lpips_model, fid_reference)
    folder = Path(cache_dir).expanduser()
    path, partial_path = folder / f"{name}.json", folder / f"{name}.partial.json"
    sources = [(path, False)] + [(Path(p).expanduser() / f"{name}.json", True) for p in published]
    records = [(where, _read_cache(where, key, is_published)) for where, is_published in sources]
    records = [(where, r) for where, r in records if r is not None]
    for where, record in records:
        if set(wanted) <= set(record["metrics"]):
            if progress:
                print(f"{name}: {'cached' if where == path else 'published'} sweep read from {where}")
            if where != path:
                write_json(path, record, best_effort=True)
            return record["result"] | {"sweep": {"key": key, "metrics": record["metrics"]}}
    for where, record in records:
        result = _complete(codec, files, record, wanted, where, progress, lpips_model, fid_reference)
        if result is not None:
            write_json(
                path, {"key": key, "metrics": result["sweep"]["metrics"], "result": result}, best_effort=True
            )
            return result
    partial = _read_cache(partial_path, key)
    same = partial is not None and set(partial["metrics"]) == set(wanted)  # points must have equal keys
    done = {p["quality"]: p for p in partial["points"]} if same else {}
    if done and progress:
        print(f"{name}: resuming, {len(done)} of {len(codec.qualities)} qualities read from {partial_path}")
    collected = list(done.values())

    def keep(point: dict) -> None:
        collected.append(point)
        write_json(partial_path, {"key": key, "metrics": wanted, "points": collected}, best_effort=True)

    result = sweep(
        codec,
        files,
        progress=progress,
        lpips_model=lpips_model,
        fid_reference=fid_reference,
        done=done,
        on_point=keep,
    )
    measured = [m for m in wanted if m.split(":")[0] in result["results"]]
    result["sweep"] = {"key": key, "metrics": measured}
    write_json(path, {"key": key, "metrics": measured, "result": result}, best_effort=True)
    partial_path.unlink(missing_ok=True)
    return result


def _complete(codec, files, record, wanted, where, progress, lpips_model, fid_reference) -> dict | None:
    """The record's sweep with the metrics it lacks measured and merged in, or None if the bytes differ.

    A metric of another variant (LPIPS vgg where alex was measured) replaces the old column.
    """
    have = record["metrics"]
    missing = [m for m in wanted if m not in have]
    families = {m.split(":")[0] for m in missing}
    extra = sweep(
        codec,
        files,
        progress=progress,
        lpips_model=lpips_model if "lpips" in families else None,
        fid_reference=fid_reference if "fid" in families else None,
        distortion=not families <= {"lpips", "fid"},
    )
    old, new = record["result"]["results"], extra["results"]
    same_bytes = old.get("quality") == new["quality"] and old.get("bpp") == new["bpp"]
    if not same_bytes:
        if progress:
            print(f"{codec.name}: {where} has other file sizes than this run's encoder; sweeping afresh")
        return None
    columns = {"lpips": ("lpips",), "fid": FID_METRICS}
    merged = dict(old)
    for family in families:
        merged.update({c: new[c] for c in columns.get(family, (family,)) if c in new})
    metrics = [m for m in have if m.split(":")[0] not in families] + missing
    description = extra["description"] if "fid" in families else record["result"]["description"]
    if progress:
        print(f"{codec.name}: {', '.join(missing)} measured and merged into the sweep from {where}")
    return {
        "name": codec.name,
        "description": description,
        "results": merged,
        "sweep": {"key": record["key"], "metrics": metrics},
    }


def _read_cache(path: Path, key: str, published: bool = False) -> dict | None:
    """The cache record at ``path`` (key, metrics, result) if it is for this key, whatever it measured.

    ``published``: the file is a sweep result (``run_baselines.py`` output), whose ``"sweep"`` stamp
    holds the key and metrics that a cache record keeps beside its result.
    """
    try:
        record = json.loads(path.read_text())
        if published:
            record = {**record["sweep"], "result": record} if record["results"] else {}
        if record.get("key") == key and isinstance(record.get("metrics"), list):
            return record
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # absent, unreadable or (published) from before the stamp: recompute
    return None
