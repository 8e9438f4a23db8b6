"""Rate-distortion curve arithmetic: interpolation at equal rate and comparisons over a bpp range."""

from __future__ import annotations

import numpy as np


def interpolate(bpp: list[float], values: list[float], at: np.ndarray) -> np.ndarray:
    """Piecewise-linear in bpp; NaN outside the curve's measured range (no extrapolation)."""
    order = np.argsort(bpp)
    x, y = np.asarray(bpp)[order], np.asarray(values)[order]
    out = np.interp(at, x, y)
    return np.where((at < x[0]) | (at > x[-1]), np.nan, out)


def gap_over_range(a: dict, b: dict, metric: str, lo: float, hi: float, n: int = 200) -> dict:
    """metric(a) - metric(b) at equal bpp over [lo, hi] ∩ both curves' ranges (CompressAI JSONs)."""
    ra, rb = a["results"], b["results"]
    start = max(lo, min(ra["bpp"]), min(rb["bpp"]))
    stop = min(hi, max(ra["bpp"]), max(rb["bpp"]))
    if start >= stop:
        return {"overlap": None, "min_gap": None, "max_gap": None}
    grid = np.linspace(start, stop, n)
    gap = interpolate(ra["bpp"], ra[metric], grid) - interpolate(rb["bpp"], rb[metric], grid)
    return {
        "overlap": (float(start), float(stop)),
        "min_gap": float(np.min(gap)),
        "max_gap": float(np.max(gap)),
        "min_gap_at_bpp": float(grid[int(np.argmin(gap))]),
    }
