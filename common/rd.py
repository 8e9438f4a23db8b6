"""Rate-distortion curves: reading them, interpolation at equal rate, gaps over a bpp range, Bjøntegaard deltas."""

from __future__ import annotations

import csv
import json
import math
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


# --------------------------------------------------------------------------------------------------
# BD tables: every curve against each anchor, as Markdown, CSV and (common/report_html.py) HTML

BD_METRICS = ("psnr-rgb", "ms-ssim-rgb", "lpips")  # each where both curves have it


def bd_rows(curves: list[dict], anchors: list[str]) -> tuple[list[dict], list[str]]:
    """BD-rate and BD-metric of every curve against each anchor present, for each of BD_METRICS; plus notes."""
    by_id = {c["id"]: c for c in curves}
    notes = [f"BD-rate anchor {a!r} is not among the curves; skipped" for a in anchors if a not in by_id]
    rows = []
    for a in (a for a in anchors if a in by_id):
        for test in curves:
            if test["id"] == a:
                continue
            for metric in BD_METRICS:
                if metric not in by_id[a]["results"] or metric not in test["results"]:
                    continue
                r = bd_rate(by_id[a], test, metric=metric)
                m = bd_metric(by_id[a], test, metric=metric)
                q, b = r["metric_range"] or (None, None), r["bpp_range"] or (None, None)
                rows.append(
                    {
                        "anchor": by_id[a]["name"],
                        "test": test["name"],
                        "metric": metric,
                        "bd_rate_percent": r["value"],
                        "bd_metric": m["value"],
                        "metric_low": q[0],
                        "metric_high": q[1],
                        "bpp_low": b[0],
                        "bpp_high": b[1],
                        "note": r["reason"] or "",
                        "kind": test.get("kind", "published"),
                    }
                )
    # what a reader looks for first: each model family against the anchors, then the codecs
    rows.sort(key=lambda row: row["kind"] != "model")
    return rows, notes


def fmt_value(v, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


BD_HEADERS = ["anchor", "test", "metric", "BD-rate", "BD-metric", "overlap (metric)", "overlap (bpp)", "note"]


def bd_cells(r: dict) -> list[str]:
    """One table row as text, shared by bd_rate.md and report.html."""
    metric_spec = ".2f" if r["metric"] == "psnr-rgb" else ".4f"

    def span(lo, hi, spec):
        return "none" if lo is None else f"{fmt_value(lo, spec)} – {fmt_value(hi, spec)}"

    rate = fmt_value(r["bd_rate_percent"], "+.1f") + ("%" if r["bd_rate_percent"] is not None else "")
    return [
        r["anchor"],
        r["test"],
        r["metric"],
        rate,
        fmt_value(r["bd_metric"], "+" + metric_spec),
        span(r["metric_low"], r["metric_high"], metric_spec),
        span(r["bpp_low"], r["bpp_high"], ".3f"),
        r["note"],
    ]


BD_EXPLAINED = (
    "BD-rate: average bitrate change of the test curve against the anchor at equal quality, over the "
    "quality range both curves cover (overlap (metric)); negative means the test needs fewer bits. "
    "BD-metric: average quality difference (test - anchor; dB for PSNR; for LPIPS, lower is better, so a "
    "negative BD-LPIPS means the test is closer to the original) at equal rate. Both use PCHIP "
    "fits (common/rd.py); overlap (bpp) is the rate span the BD-rate integral covers."
)


def bd_markdown(rows: list[dict], notes: list[str]) -> str:
    lines = ["# BD-rate (Bjøntegaard deltas)", "", BD_EXPLAINED, ""]
    lines.append("| " + " | ".join(BD_HEADERS) + " |")
    lines.append("|" + " --- |" * len(BD_HEADERS))
    lines += ["| " + " | ".join(bd_cells(r)) + " |" for r in rows]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_bd_tables(rows: list[dict], notes: list[str], out: Path) -> None:
    (out / "bd_rate.md").write_text(bd_markdown(rows, notes))
    with open(out / "bd_rate.csv", "w", newline="") as f:
        fields = ["anchor", "test", "metric", "bd_rate_percent", "bd_metric"]
        fields += ["metric_low", "metric_high", "bpp_low", "bpp_high", "note", "kind"]
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
