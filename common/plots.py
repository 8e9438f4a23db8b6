"""Figures for comparing codecs: rate-distortion curves, reconstruction grids, error maps, crops.

Everything draws on :class:`matplotlib.figure.Figure` objects directly (Agg canvas, no pyplot), so
nothing here changes the global backend or needs a display, and figures are freed with their object.

    from common.plots import rd_figure, reconstruction_grid, error_map, checkpoint_visuals
    fig = rd_figure([json.load(open("jpeg420.json")), json.load(open("beta.json"))], "psnr-rgb")
    fig.savefig("rd.png")
    grid, errors, info = checkpoint_visuals("beta_vae_gan/pretrained/beta_vae_gan-vr.pth", "kodim23.png")
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


@dataclass(frozen=True)
class MetricSpec:
    label: str
    higher_is_better: bool


# Metric key (CompressAI results schema, plus ms-ssim-db derived here) -> axis label and direction.
METRICS: dict[str, MetricSpec] = {
    "psnr-rgb": MetricSpec("PSNR (dB, RGB)", True),
    "ms-ssim-rgb": MetricSpec("MS-SSIM (RGB)", True),
    "ms-ssim-db": MetricSpec("MS-SSIM (dB) = -10 log10(1 - MS-SSIM)", True),
    "lpips": MetricSpec("LPIPS (lower is better)", False),
    "fid": MetricSpec("patch FID (lower is better)", False),
    "kid": MetricSpec("patch KID (lower is better)", False),
}


def new_figure(figsize: tuple[float, float], dpi: int = 110, **kwargs) -> Figure:
    """A figure on its own Agg canvas: no pyplot and no global backend, so scripts and tests can draw
    in any process without a display."""
    fig = Figure(figsize=figsize, dpi=dpi, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def ms_ssim_db(values) -> list[float]:
    """MS-SSIM on a dB scale, which spreads out the values near 1 where good codecs live."""
    return [-10 * math.log10(max(1 - v, 1e-10)) if v is not None and v == v else float("nan") for v in values]


def curve_values(curve: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(bpp, values) of a CompressAI-schema curve sorted by bpp, or None when it lacks the metric."""
    results = curve.get("results", {})
    if metric == "ms-ssim-db" and "ms-ssim-db" not in results and "ms-ssim-rgb" in results:
        values = ms_ssim_db(results["ms-ssim-rgb"])
    elif metric in results:
        values = results[metric]
    else:
        return None
    bpp = np.asarray(results["bpp"], dtype=float)
    vals = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    ok = np.isfinite(bpp) & np.isfinite(vals)
    if not ok.any():
        return None
    order = np.argsort(bpp[ok])
    return bpp[ok][order], vals[ok][order]


def _style(curve: dict, index: int) -> dict:
    """Learned models solid with markers, classical codecs dashed, published curves dotted."""
    color = colormaps["tab10"](index % 10) if index < 10 else colormaps["tab20b"](index % 20)
    kind = curve.get("kind", "codec")
    if kind == "model":
        return {"color": color, "linestyle": "-", "marker": "o", "linewidth": 2.0, "markersize": 5}
    if kind == "published":
        return {"color": color, "linestyle": ":", "marker": "s", "linewidth": 1.5, "markersize": 3}
    return {"color": color, "linestyle": "--", "marker": ".", "linewidth": 1.3, "markersize": 4}


def rd_figure(
    curves: list[dict],
    metric: str = "psnr-rgb",
    bpp_range: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure | None:
    """One line per curve (CompressAI JSON; optional ``kind``: model, codec or published) of metric vs bpp.

    The x axis covers ``bpp_range``, or 0 to the data's largest bpp capped at 2; the y axis fits the
    points inside that range. Returns None when no curve has the metric.
    """
    spec = METRICS.get(metric, MetricSpec(metric, True))
    data = [(c, curve_values(c, metric)) for c in curves]
    data = [(c, v) for c, v in data if v is not None]
    if not data:
        return None
    if bpp_range is None:
        hi = max(float(b.max()) for _, (b, _) in data)
        bpp_range = (0.0, min(2.0, hi * 1.05))
    fig = new_figure((9.5, 5.2), layout="constrained")
    ax = fig.add_subplot()
    visible = []
    for i, (curve, (bpp, vals)) in enumerate(data):
        ax.plot(bpp, vals, label=curve.get("name", f"curve {i}"), **_style(curve, i))
        inside = (bpp >= bpp_range[0]) & (bpp <= bpp_range[1])
        visible.extend(vals[inside])
    ax.set_xlim(*bpp_range)
    if visible:
        lo, hi = float(np.min(visible)), float(np.max(visible))
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("bits per pixel (bpp, every byte of the file)")
    ax.set_ylabel(spec.label)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{spec.label} vs rate")
    # beside the axes, not on them: with a dozen curves any corner hides some
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def save_figure(fig: Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (or the given formats); returns the paths."""
    paths = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt)
        paths.append(path)
    return paths


def figure_to_array(fig: Figure) -> np.ndarray:
    """The rendered figure as uint8 RGB (H, W, 3)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Images


def error_map(original: np.ndarray, reconstruction: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Absolute error, averaged over RGB, as an inferno heatmap (uint8 H x W x 3).

    ``vmax`` is the error (in 8-bit levels) shown as the brightest colour; by default the 99.5th
    percentile of this image's error, so the map shows where errors are, not how big. Pass the same
    vmax to compare codecs on one scale.
    """
    if original.shape != reconstruction.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {reconstruction.shape}")
    err = np.abs(original.astype(np.float32) - reconstruction.astype(np.float32)).mean(axis=-1)
    if vmax is None:
        vmax = max(float(np.percentile(err, 99.5)), 1.0)
    rgba = colormaps["inferno"](np.clip(err / vmax, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def reconstruction_grid(
    originals: list[np.ndarray],
    reconstructions: list[list[np.ndarray]],
    labels: list[str],
    captions: list[list[str]] | None = None,
    panel_inches: float = 3.0,
) -> Figure:
    """Rows are images, columns the original then one reconstruction per label.

    ``reconstructions[i][j]`` is image i decoded by ``labels[j]``; ``captions[i][j]`` (e.g. its bpp
    and PSNR) goes under that panel.
    """
    if len(reconstructions) != len(originals):
        raise ValueError("one list of reconstructions per original is needed")
    cols = 1 + len(labels)
    h, w = originals[0].shape[:2]
    fig = new_figure((panel_inches * cols, panel_inches * len(originals) * h / w + 0.6))
    axes = fig.subplots(len(originals), cols, squeeze=False)
    for i, (orig, recs) in enumerate(zip(originals, reconstructions)):
        if len(recs) != len(labels):
            raise ValueError(f"image {i}: {len(recs)} reconstructions for {len(labels)} labels")
        panels = [("original", orig, "")] + [
            (lab, rec, captions[i][j] if captions else "") for j, (lab, rec) in enumerate(zip(labels, recs))
        ]
        for ax, (lab, img, cap) in zip(axes[i], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(lab, fontsize=9)
            if cap:
                ax.set_xlabel(cap, fontsize=8)
    fig.tight_layout()
    return fig


def detail_box(image: np.ndarray, size: int, stride: int | None = None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the ``size`` square with the most edge energy (squared gradient).

    Textured regions are where codecs differ; flat sky shows nothing. Computed with an integral
    image, so every window position on the stride grid costs O(1).
    """
    h, w = image.shape[:2]
    sh, sw = min(size, h), min(size, w)
    gray = image.astype(np.float64).mean(axis=-1) if image.ndim == 3 else image.astype(np.float64)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.diff(gray, axis=1) ** 2
    energy[1:, :] += np.diff(gray, axis=0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = stride or max(1, min(sh, sw) // 8)
    tops = np.arange(0, h - sh + 1, stride)
    lefts = np.arange(0, w - sw + 1, stride)
    t, lf = tops[:, None], lefts[None, :]
    sums = integral[t + sh, lf + sw] - integral[t, lf + sw] - integral[t + sh, lf] + integral[t, lf]
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(tops[i]), int(lefts[j]), sh, sw


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = box
    return image[top : top + h, left : left + w]


def side_by_side(
    original: np.ndarray,
    panels: list[tuple[str, np.ndarray, str]],
    box: tuple[int, int, int, int] | None = None,
    inset_size: int | None = None,
    zoom: int = 3,
    columns: int = 4,
    title: str | None = None,
) -> tuple[Figure, tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The same crop of the original and of each reconstruction, each with a zoomed inset.

    ``panels`` are (label, full reconstruction, caption). The crop (``box``, default the most detailed
    square of 256 px or the image) and the inset (its most detailed sub-square, shown ``zoom`` times
    larger in the lower right corner) are chosen on the original and reused for every panel.
    Returns (figure, crop box, inset box relative to the crop).
    """
    box = box or detail_box(original, 256)
    ref = crop(original, box)
    inset_size = inset_size or max(8, min(ref.shape[:2]) // (zoom + 1))
    inset = detail_box(ref, inset_size)
    items = [("original", original, f"{box[3]}x{box[2]} crop at ({box[1]}, {box[0]})")] + list(panels)
    cols = min(columns, len(items))
    rows = math.ceil(len(items) / cols)
    fig = new_figure((3.2 * cols, 3.2 * rows * box[2] / box[3] + 0.9 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(items) :]:
        ax.axis("off")
    for ax, (label, image, caption) in zip(axes, items):
        region = crop(image, box)
        ax.imshow(region, interpolation="nearest")
        ax.set_xlim(-0.5, region.shape[1] - 0.5)
        ax.set_ylim(region.shape[0] - 0.5, -0.5)
        it, il, ih, iw = inset
        ax.add_patch(Rectangle((il - 0.5, it - 0.5), iw, ih, fill=False, edgecolor="yellow", linewidth=1))
        sub = ax.inset_axes([0.6, 0.0, 0.4, 0.4])
        sub.imshow(crop(region, inset), interpolation="nearest")
        sub.set_xticks([])
        sub.set_yticks([])
        for spine in sub.spines.values():
            spine.set_edgecolor("yellow")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(caption, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, box, inset


def checkpoint_visuals(checkpoint: str | Path, image_path: str | Path, vmax: float | None = None):
    """One model, one image: (grid figure of original | reconstruction | error map, error map, info).

    The reconstruction is decoded from the real compressed bytes, so the bpp in ``info`` (and in the
    caption) counts every byte of the file, header included.
    """
    from common.checkpoint import load_model
    from common.codec import compress_image, decompress_bytes
    from common.datasets import load_image
    from common.metrics import file_bpp, psnr

    model = load_model(checkpoint)
    image, _ = load_image(image_path)
    data = compress_image(model, image)
    decoded = decompress_bytes(data, model)
    bpp = file_bpp(len(data), *image.shape[:2])
    info = {"bpp": bpp, "psnr-rgb": psnr(image, decoded), "bytes": len(data), "family": model.family}
    errors = error_map(image, decoded, vmax)
    grid = reconstruction_grid(
        [image],
        [[decoded, errors]],
        [f"{model.family} ({Path(checkpoint).stem})", "absolute error"],
        [[f"{bpp:.3f} bpp, {info['psnr-rgb']:.2f} dB", "bright = large error"]],
    )
    return grid, errors, info
