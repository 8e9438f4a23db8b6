"""Markdown tables of every model point against every codec at equal bpp, from compare_models' summary.json.

    python scripts/rd_table.py results/kodak/comparison/summary.json --metrics psnr-rgb ms-ssim-rgb kid
    python scripts/rd_table.py results/kodak/comparison/summary.json --metrics kid --codecs hevc --scale 2

One row per model point; each codec column is that codec's value at the model's bpp (times
``--scale``), linearly interpolated between its measured points (``common.rd.interpolate``): ``n/a``
outside its range, ``–`` where it lacks the metric. This is how the README's tables are made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.rd import interpolate  # noqa: E402

DIGITS = {"psnr-rgb": 2, "ms-ssim-rgb": 4, "ssim-rgb": 4, "kid": 3, "fid": 0, "lpips": 4}


def tables(summary: dict, metrics: list[str], codecs: list[str] | None = None, scale: float = 1.0) -> str:
    """The tables as Markdown, one per metric the models carry."""
    curves = summary["curves"]
    models = [c for c in curves if c.get("kind") == "model"]
    others = [c for c in curves if c.get("kind") != "model" and (codecs is None or c.get("id") in codecs)]
    out = []
    for metric in metrics:
        if not models or not all(metric in m["results"] for m in models):
            continue
        fmt = f"{{:.{DIGITS.get(metric, 4)}f}}"
        at = f" at {scale:g}× bpp" if scale != 1 else ""
        lines = [
            f"| point | bpp | {metric} | " + " | ".join(c["name"] + at for c in others) + " |",
            "| --- " * (3 + len(others)) + "|",
        ]
        for m in models:
            r = m["results"]
            for i, point in enumerate(m.get("points", [m["name"]] * len(r["bpp"]))):
                row = [point, f"{r['bpp'][i]:.3f}", fmt.format(r[metric][i])]
                for c in others:
                    if metric not in c["results"]:
                        row.append("–")
                        continue
                    v = interpolate(
                        c["results"]["bpp"], c["results"][metric], np.array([scale * r["bpp"][i]])
                    )[0]
                    row.append("n/a" if np.isnan(v) else fmt.format(v))
                lines.append("| " + " | ".join(row) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("summary", type=Path, help="summary.json written by compare_models.py")
    parser.add_argument("--metrics", nargs="+", default=["psnr-rgb", "ms-ssim-rgb", "lpips", "kid"])
    parser.add_argument("--codecs", nargs="+", default=None, help="codec ids (default: every curve)")
    parser.add_argument("--scale", type=float, default=1.0, help="read the codecs at this many times the bpp")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        raise VAEGANError(f"--scale must be positive, got {args.scale}")
    try:
        summary = json.loads(args.summary.read_text())
        summary["curves"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise VAEGANError(f"{args.summary} is not a compare_models.py summary.json: {exc}") from None
    print(tables(summary, args.metrics, args.codecs, args.scale), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
