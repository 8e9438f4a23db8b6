"""Rate-distortion curves: reading them, interpolation at equal rate, gaps over a bpp range, Bjøntegaard deltas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.errors import VAEGANError


def load_curve(path, what: str = "results file") -> dict:
    """A curve in CompressAI's JSON schema (a non-empty ``results.bpp`` list, every other list in
    ``results`` as long), or a one-line error.

    ``what`` starts each message (``--results``, ``results file``); the caller checks the metrics it
    needs. A compare_models ``summary.json`` holds several curves, and the message says so.
    """
    try:
        curve = json.loads(Path(path).read_text())
    except OSError as exc:
        raise VAEGANError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise VAEGANError(f"{what} {path}: not JSON ({exc})") from None
    results = curve.get("results") if isinstance(curve, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
        several = isinstance(curve, dict) and "curves" in curve
        hint = " (a compare_models summary.json holds several; use a per-family or per-codec JSON)"
        raise VAEGANError(
            f"{what} {path}: not a CompressAI results file (no results.bpp list)" + (hint if several else "")
        )
    n = len(results["bpp"])
    for key, values in results.items():
        if isinstance(values, list) and len(values) != n:
            raise VAEGANError(f"{what} {path}: '{key}' has {len(values)} values for {n} bpp values")
    curve.setdefault("name", Path(path).stem)
    return curve


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


# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas (VCEG-M33, 2001), in the modern form used by JVET's and CompressAI's tools:
# log-rate against quality, piecewise cubic Hermite (PCHIP) fits instead of Bjøntegaard's cubic
# polynomial, integrated exactly over the range where both curves are measured.

# Metrics where a lower value is better; their curves are fitted on the negated value.
LOWER_IS_BETTER = frozenset({"lpips", "fid", "kid", "kid_std", "bits", "mse"})


def _rd_points(curve: dict, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(bpp, quality, dropped): the curve's finite points sorted by rate, quality strictly rising.

    A point whose quality does not beat every cheaper point is dropped (a codec setting that spends
    more bits for nothing is not on the RD front, and PCHIP needs a monotone abscissa for BD-rate).
    Quality is the metric, negated for metrics where lower is better.
    """
    results = curve["results"]
    rate = np.asarray(results["bpp"], dtype=np.float64)
    value = np.asarray(results[metric], dtype=np.float64)
    if metric in LOWER_IS_BETTER:
        value = -value
    keep = np.isfinite(rate) & np.isfinite(value) & (rate > 0)
    rate, value = rate[keep], value[keep]
    order = np.lexsort((-value, rate))  # by rate; at equal rate the best quality first
    rate, value = rate[order], value[order]
    xs, ys = [], []
    for r, v in zip(rate, value):
        if (not ys or v > ys[-1]) and (not xs or r > xs[-1]):
            xs.append(r)
            ys.append(v)
    return np.array(xs), np.array(ys), int(keep.size - len(xs))


def _bd_failure(metric: str, reason: str, **extra) -> dict:
    return {
        "value": None,
        "metric": metric,
        "reason": reason,
        "metric_range": None,
        "bpp_range": None,
    } | extra


def _missing(anchor: dict, test: dict, metric: str) -> dict | None:
    """A failure record when a curve lacks the metric (e.g. no LPIPS weights when it was measured)."""
    for curve in (anchor, test):
        if metric not in curve["results"] or "bpp" not in curve["results"]:
            return _bd_failure(metric, f"curve {curve.get('name', '?')!r} has no bpp or {metric!r} values")
    return None


def _fronts(anchor: dict, test: dict, metric: str):
    """Both curves' RD fronts and their point counts, or the failure dict when a BD value cannot exist."""
    if (failure := _missing(anchor, test, metric)) is not None:
        return failure
    ra, qa, da = _rd_points(anchor, metric)
    rt, qt, dt = _rd_points(test, metric)
    counts = {"points": (len(ra), len(rt)), "dropped": (da, dt)}
    if len(ra) < 2 or len(rt) < 2:
        return _bd_failure(
            metric, f"need at least 2 RD points per curve, have {len(ra)} and {len(rt)}", **counts
        )
    return (ra, qa), (rt, qt), counts


def bd_rate(anchor: dict, test: dict, metric: str = "psnr-rgb") -> dict:
    """Average rate difference (percent) of ``test`` against ``anchor`` at equal ``metric``.

    Negative means ``test`` needs fewer bits. Inputs are CompressAI JSONs. log(bpp) is fitted as a
    PCHIP function of the metric on each curve, and the mean difference over the metric range both
    curves cover gives ``100 * (exp(mean) - 1)``. Points off the RD front are dropped first
    (:func:`_rd_points`). Returns the value, the metric and bpp ranges used, and the points
    kept; ``value`` is None with a ``reason`` when a curve has fewer than 2 points or the metric
    ranges do not overlap.
    """
    from scipy.interpolate import PchipInterpolator

    prepared = _fronts(anchor, test, metric)
    if isinstance(prepared, dict):
        return prepared
    (ra, qa), (rt, qt), counts = prepared
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if lo >= hi:
        return _bd_failure(metric, "the curves' metric ranges do not overlap", **counts)
    fa, ft = PchipInterpolator(qa, np.log(ra)), PchipInterpolator(qt, np.log(rt))
    mean_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    bpp_ends = np.exp([fa(lo), ft(lo), fa(hi), ft(hi)])
    return {
        "value": float(100.0 * (np.exp(mean_diff) - 1.0)),
        "metric": metric,
        "reason": None,
        "metric_range": tuple(sorted((float(sign * lo), float(sign * hi)))),
        "bpp_range": (float(min(bpp_ends)), float(max(bpp_ends))),
        **counts,
    }


def bd_metric(anchor: dict, test: dict, metric: str = "psnr-rgb") -> dict:
    """Average ``metric`` difference (test - anchor, in the metric's units) at equal rate: BD-PSNR etc.

    The metric is fitted as a PCHIP function of log(bpp) on each curve and averaged over the log-rate
    range both curves cover. Positive means ``test`` scores higher at the same rate (better for
    PSNR/MS-SSIM, worse for LPIPS/FID). Same point filtering and failure reporting as :func:`bd_rate`.
    """
    from scipy.interpolate import PchipInterpolator

    prepared = _fronts(anchor, test, metric)
    if isinstance(prepared, dict):
        return prepared
    (ra, qa), (rt, qt), counts = prepared
    la, lt = np.log(ra), np.log(rt)
    lo, hi = max(la[0], lt[0]), min(la[-1], lt[-1])
    if lo >= hi:
        return _bd_failure(metric, "the curves' bpp ranges do not overlap", **counts)
    fa, ft = PchipInterpolator(la, qa), PchipInterpolator(lt, qt)
    mean_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    ends = sign * np.array([fa(lo), ft(lo), fa(hi), ft(hi)])
    return {
        "value": float(sign * mean_diff),
        "metric": metric,
        "reason": None,
        "metric_range": (float(ends.min()), float(ends.max())),
        "bpp_range": (float(np.exp(lo)), float(np.exp(hi))),
        **counts,
    }
