"""Check target-bpp rate control on an image set: what ``codec.py compress --bpp B`` does, per image.

    python scripts/rate_control.py --model_path beta_vae_gan/pretrained/beta_vae_gan-vr.pth \
        --data_dir ../data --dataset kodak --bpp 0.1 0.25 0.5 1.0 --output results/kodak/rate_control.json

For each target and image: the real file's bpp, the quality the search chose, the relative error,
whether it is within the tolerance, and the note when the model cannot reach the target. Every file
is also decoded, so a rate is only counted when its file reads back. Exit code 1 if any image misses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.codec import RATE_TOLERANCE, compress_to_bpp, decompress_bytes  # noqa: E402
from common.datasets import load_image  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.evaluation import image_files  # noqa: E402
from common.files import atomic_write  # noqa: E402
from common.metrics import file_bpp  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_path", "--model-path", dest="model_path", required=True)
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default="../data")
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--bpp", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0], help="targets")
    parser.add_argument("--tolerance", type=float, default=RATE_TOLERANCE, help="relative")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--output", type=Path, default=None, help="JSON with every image's result")
    args = parser.parse_args(argv)

    model = load_model(args.model_path)
    files = image_files(args.data_dir, args.dataset, args.limit)
    images = {f.name: load_image(f)[0] for f in files}
    rows, misses = [], 0
    for target in args.bpp:
        errors = []
        t0 = time.perf_counter()
        for name, image in images.items():
            data, quality, note = compress_to_bpp(model, image, target, args.tolerance)
            if decompress_bytes(data, model).shape != image.shape:
                raise VAEGANError(f"{name}: the file at {target:g} bpp did not decode to the image's size")
            bpp = file_bpp(len(data), *image.shape[:2])
            error = bpp / target - 1
            ok = abs(error) <= args.tolerance
            misses += not ok
            errors.append(abs(error))
            rows.append(
                {"target": target, "image": name, "bpp": bpp, "quality": quality, "error": error, "ok": ok}
                | ({"note": note} if note else {})
            )
        per_image = (time.perf_counter() - t0) / len(images)
        print(
            f"--bpp {target:g}: {sum(r['ok'] for r in rows if r['target'] == target)}/{len(images)} images "
            f"within {args.tolerance:.0%}, largest error {max(errors):.2%}, {per_image:.1f} s per image"
        )
    if args.output:
        summary = {
            "model": str(args.model_path),
            "model_id": model.identity().hex(),
            "dataset": args.dataset,
            "tolerance": args.tolerance,
            "images": len(images),
            "misses": misses,
            "rows": rows,
        }
        atomic_write(args.output, json.dumps(summary, indent=2).encode(), make_parents=True)
        print(f"wrote {args.output}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
