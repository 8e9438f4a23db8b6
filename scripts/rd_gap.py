"""Compare two rate-distortion curves (CompressAI-schema JSONs) at equal bpp over a range.

    python scripts/rd_gap.py results/kodak/beta_vae_gan.json results/kodak/jpeg420.json \
        --metric psnr-rgb --range 0.1 0.5
    python scripts/rd_gap.py realistic.json results/kodak/hevc.json --metric lpips --at 0.1 0.2 --rate_factor 2

``--at B ...`` prints instead each curve's value at the given rates, the second's at ``rate_factor``
times them (HiFiC's claim: as good as a classical codec at twice the bits), and which is better.

Prints the smallest and largest difference (first minus second) over the overlap of both curves
with the range, with linear interpolation in bpp and no extrapolation; then the Bjøntegaard
averages of the first against the second (BD-rate: percent bits at equal metric, negative means the
first needs fewer; BD-metric: difference at equal rate), each over the whole overlap of the curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common.cli import run_cli
from common.errors import VAEGANError
from common.rd import LOWER_IS_BETTER, bd_metric, bd_rate, gap_over_range, interpolate, load_curve


def _load(path: Path, metric: str) -> dict:
    """A CompressAI-schema curve (checked by ``load_curve``) that has ``metric``, or a one-line error."""
    curve = load_curve(path)
    results = curve["results"]
    if metric not in results:
        raise VAEGANError(f"{path} has no '{metric}'; it has: {', '.join(k for k in results if k != 'bpp')}")
    return curve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--metric", default="psnr-rgb")
    parser.add_argument("--range", nargs=2, type=float, default=(0.1, 0.5), metavar=("LO", "HI"))
    parser.add_argument(
        "--at", nargs="+", type=float, default=None, metavar="BPP", help="rates to compare at"
    )
    parser.add_argument(
        "--rate_factor",
        type=float,
        default=1.0,
        help="with --at: the second curve is read at this times the rate",
    )
    args = parser.parse_args(argv)
    if args.at:
        return values_at(_load(args.first, args.metric), _load(args.second, args.metric), args)
    if args.range[0] >= args.range[1]:
        parser.error(f"--range needs LO < HI, got {args.range[0]} {args.range[1]}")
    a, b = _load(args.first, args.metric), _load(args.second, args.metric)
    gap = gap_over_range(a, b, args.metric, *args.range)
    if gap["overlap"] is None:
        print(f"{a['name']} and {b['name']} do not overlap within {args.range[0]}-{args.range[1]} bpp")
        return 1
    lo, hi = gap["overlap"]
    print(
        f"{args.metric}: {a['name']} minus {b['name']} over {lo:.3f}-{hi:.3f} bpp: "
        f"min {gap['min_gap']:+.3f} (at {gap['min_gap_at_bpp']:.3f} bpp), max {gap['max_gap']:+.3f}"
    )
    rate, level = bd_rate(b, a, args.metric), bd_metric(b, a, args.metric)
    if rate["value"] is None:
        print(f"BD-rate: not defined ({rate['reason']})")
    else:
        lo, hi = rate["bpp_range"]
        print(
            f"BD-rate {rate['value']:+.1f}% and BD-{args.metric} {level['value']:+.3f} of {a['name']} "
            f"against {b['name']} (over {lo:.3f}-{hi:.3f} bpp)"
        )
    return 0


def values_at(a: dict, b: dict, args) -> int:
    """One line per rate: a at b, b at factor * b (linear in bpp, no extrapolation); 1 if any is out of range."""
    lower = args.metric in LOWER_IS_BETTER
    missing = False
    for rate in args.at:
        va = float(interpolate(a["results"]["bpp"], a["results"][args.metric], np.array([rate]))[0])
        other = rate * args.rate_factor
        vb = float(interpolate(b["results"]["bpp"], b["results"][args.metric], np.array([other]))[0])
        if np.isnan(va) or np.isnan(vb):
            missing = True
            verdict = "outside a curve's measured range"
        else:
            verdict = f"{a['name'] if (va < vb) == lower else b['name']} better"
        print(
            f"{args.metric}: {a['name']} at {rate:g} bpp {va:.4f}, {b['name']} at {other:g} bpp {vb:.4f}: {verdict}"
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
