"""Compress images to files and back with any family's checkpoint.

    python scripts/codec.py compress IN OUT [--model_path P | --family F] [--quality Q | --bpp B]
    python scripts/codec.py decompress IN OUT [--model_path P] [--realism W]

IN may be a folder: every image (or .vgan file) in it is processed, a bad one is reported and the
rest carry on (exit code 1 if any failed). ``decompress`` finds the family, and the shipped
checkpoint when no --model_path is given, from the file's header.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from common import zoo  # noqa: E402
from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.codec import (  # noqa: E402
    RATE_TOLERANCE,
    check_rate_control,
    compress_image,
    compress_to_bpp,
    decompress_bytes,
    read_compressed,
)
from common.datasets import IMAGE_EXTENSIONS, load_image  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.files import atomic_write  # noqa: E402
from common.metrics import file_bpp  # noqa: E402
from common.registry import FAMILIES  # noqa: E402

SUFFIX = ".vgan"


OUTPUT_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM"}  # lossless


def _pairs(src: Path, dst: Path, mode: str, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """(input, output) pairs, refused before anything is written when an output would replace an
    input, two outputs coincide, or (without ``overwrite``) an output exists: in a folder that holds
    the originals, ``decompress album album`` would otherwise replace each photo with its decoding."""
    if not src.exists():
        raise VAEGANError(f"input not found: {src}")
    if not src.is_dir():
        if dst.is_dir():  # like cp: into the folder, under the input's name
            dst = dst / (src.stem + (SUFFIX if mode == "compress" else ".png"))
        pairs = [(src, dst)]
    elif dst.exists() and not dst.is_dir():
        raise VAEGANError(f"{src} is a folder, so the output must be a folder too, but {dst} is a file")
    else:
        wanted = IMAGE_EXTENSIONS if mode == "compress" else {SUFFIX}
        out_suffix = SUFFIX if mode == "compress" else ".png"
        pairs = []
        for p in sorted(q for q in src.iterdir() if q.suffix.lower() in wanted):
            if p.is_file():  # follows symlinks; a FIFO would block the read forever
                pairs.append((p, dst / (p.stem + out_suffix)))
            else:
                print(f"skipped: {p}: not a regular file", file=sys.stderr)
    if mode == "decompress":
        for _, out in pairs:
            if out.suffix.lower() not in OUTPUT_FORMATS:
                known = ", ".join(OUTPUT_FORMATS)
                raise VAEGANError(f"cannot write {out}: unknown image extension (use one of {known})")
    inputs = {_key(p): p for p, _ in pairs}
    seen: dict[str, Path] = {}
    for p, out in pairs:
        key = _key(out)
        if key in inputs:
            raise VAEGANError(f"{out} is an input: refusing to overwrite it; choose another output")
        if key in seen:
            raise VAEGANError(
                f"{seen[key]} and {p} would both be written to {out}; rename one or use separate folders"
            )
        seen[key] = p
    existing = [out for _, out in pairs if out.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise VAEGANError(f"{existing[0]} exists{more}; pass --overwrite to replace it")
    return pairs


def _key(path: Path) -> str:
    """One name per file: symlinks, '..' and the case of case-insensitive file systems resolved."""
    return os.path.normcase(os.path.realpath(path))


def _png_bytes(image, dst: Path) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=OUTPUT_FORMATS[dst.suffix.lower()])
    return buf.getvalue()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VAEGANError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("compress", help="image(s) -> compressed file(s)")
    d = sub.add_parser("decompress", help="compressed file(s) -> PNG image(s)")
    for p in (c, d):
        p.add_argument("input", type=Path)
        p.add_argument("output", type=Path)
        p.add_argument("--model_path", "--model-path", dest="model_path", default=None)
        p.add_argument("--quiet", action="store_true", help="print nothing but errors")
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace existing outputs (atomically; inputs are never replaced)",
        )
        p.add_argument(
            "--max_pixels",
            "--max-pixels",
            dest="max_pixels",
            type=int,
            default=None,
            help="refuse larger images (padded size); default $VAEGAN_MAX_PIXELS or 64 megapixels",
        )
    c.add_argument(
        "--family",
        choices=list(FAMILIES),
        default=zoo.DEFAULT_FAMILY,
        help="shipped model family used when no --model_path is given",
    )
    c.add_argument(
        "--quality",
        type=float,
        default=None,
        help="rate, 1 = lowest: any number in the range of a variable-rate model (written in the file: "
        "the shipped beta_vae_gan takes 1-8, hierarchical_vae_gan 1-8), else a rate point of the "
        "checkpoint: the shipped vq_vae_gan takes 1-3, its residual stages (default: the middle of the range)",
    )
    c.add_argument(
        "--bpp",
        type=float,
        default=None,
        help="target bits per pixel: a variable-rate model searches, per image, the quality whose file "
        f"is within {RATE_TOLERANCE:.0%}% of it (or the nearest rate it reaches, said so)",
    )
    d.add_argument(
        "--realism",
        type=float,
        default=None,
        help="decode with a realism decoder: 0 = faithful, the lowest distortion (default), 1 = realistic "
        "texture, any value between; the file must come from a model that has one (shipped: "
        "beta_vae_gan/pretrained/beta_vae_gan-vr.pth, the default model)",
    )
    args = parser.parse_args(argv)

    model = None
    if args.mode == "compress" and args.bpp is not None and args.quality is not None:
        raise VAEGANError("give --quality or --bpp, not both")
    if args.model_path:
        model = load_model(args.model_path)
        if args.mode == "compress" and args.quality is not None:
            model = zoo.at_quality(model, args.quality)
    elif args.mode == "compress":
        model = zoo.shipped_model(args.family, args.quality)
    if args.mode == "compress" and args.bpp is not None and model.quality_range() is None:
        check_rate_control(model)
    pairs = _pairs(args.input, args.output, args.mode, args.overwrite)
    if args.input.is_dir() and pairs:
        _make_folder(args.output)
    failures = 0
    for src, dst in pairs:
        try:
            t0 = time.perf_counter()
            if args.mode == "compress":
                image, notes = load_image(src, max_pixels=args.max_pixels)
                if args.bpp is not None:
                    data, quality, note = compress_to_bpp(model, image, args.bpp, max_pixels=args.max_pixels)
                    notes = [*notes, f"quality {quality:g}"] + ([note] if note else [])
                else:
                    data = compress_image(model, image, max_pixels=args.max_pixels)
                _make_folder(dst.parent)
                atomic_write(dst, data)
                h, w = image.shape[:2]
                msg = f"{src} -> {dst}: {len(data)} bytes, {file_bpp(len(data), h, w):.4f} bpp"
                msg += "".join(f" [{n}]" for n in notes)
            else:
                data = read_compressed(src)
                image = decompress_bytes(data, model, max_pixels=args.max_pixels, realism=args.realism)
                _make_folder(dst.parent)
                atomic_write(dst, _png_bytes(image, dst))
                msg = f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}"
            if not args.quiet:
                print(f"{msg} ({time.perf_counter() - t0:.2f} s)")
        except VAEGANError as exc:
            if len(pairs) == 1 and not args.input.is_dir():
                raise
            failures += 1
            print(f"error: {src}: {exc}", file=sys.stderr)
    if not pairs:
        raise VAEGANError(f"nothing to {args.mode} in {args.input}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
