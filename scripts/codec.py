"""Compress images to files and back with any family's checkpoint.

    python scripts/codec.py compress IN OUT [--model_path P | --family F --quality Q]
    python scripts/codec.py decompress IN OUT [--model_path P]

IN may be a folder: every image (or .vgan file) in it is processed, a bad one is reported and the
rest carry on (exit code 1 if any failed). ``decompress`` finds the family, and the shipped
checkpoint when no --model_path is given, from the file's header.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from common import zoo  # noqa: E402
from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.codec import compress_image, decompress_bytes  # noqa: E402
from common.datasets import IMAGE_EXTENSIONS, load_image  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.registry import FAMILIES  # noqa: E402

SUFFIX = ".vgan"


def _pairs(src: Path, dst: Path, mode: str) -> list[tuple[Path, Path]]:
    if not src.exists():
        raise VAEGANError(f"input not found: {src}")
    if not src.is_dir():
        return [(src, dst)]
    if mode == "compress":
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return [(p, dst / (p.stem + SUFFIX)) for p in files]
    return [(p, dst / (p.stem + ".png")) for p in sorted(src.glob(f"*{SUFFIX}"))]


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise VAEGANError(f"expected a compressed file, got a folder: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VAEGANError(f"cannot read {path}: {exc.strerror}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("compress", help="image(s) -> compressed file(s)")
    d = sub.add_parser("decompress", help="compressed file(s) -> PNG image(s)")
    for p in (c, d):
        p.add_argument("input", type=Path)
        p.add_argument("output", type=Path)
        p.add_argument("--model_path", "--model-path", dest="model_path", default=None)
        p.add_argument("--quiet", action="store_true")
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
        type=int,
        default=None,
        help="shipped checkpoint, 1 = lowest rate (default: the middle one)",
    )
    args = parser.parse_args(argv)

    model = None
    if args.model_path:
        model = load_model(args.model_path)
    elif args.mode == "compress":
        model = load_model(zoo.default_checkpoint(args.family, args.quality))
    pairs = _pairs(args.input, args.output, args.mode)
    if args.input.is_dir():
        args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for src, dst in pairs:
        try:
            t0 = time.perf_counter()
            if args.mode == "compress":
                image, notes = load_image(src, max_pixels=args.max_pixels)
                data = compress_image(model, image, max_pixels=args.max_pixels)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
                h, w = image.shape[:2]
                msg = f"{src} -> {dst}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp"
                msg += "".join(f" [{n}]" for n in notes)
            else:
                image = decompress_bytes(_read_bytes(src), model, max_pixels=args.max_pixels)
                dst.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(dst)
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
