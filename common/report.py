"""Compare every model family with classical codecs: RD figures, BD-rate table, crops, one HTML report.

``compare_models.py`` (repo root) is the command line; this module does the work:

1. image set: ``--dataset`` under ``--data_dir``, or scikit-image's sample photos when it is missing;
2. one curve per family: every checkpoint (VQ: every residual stage of it) evaluated with real files
   by :func:`common.evaluation.evaluate_checkpoint`, cached per point under ``--cache_dir``;
3. one curve per classical codec (:func:`common.baselines.sweep_cached`), plus ``--results`` JSONs;
4. figures (:mod:`common.plots`), BD-rates (:func:`common.rd.bd_rate`), side-by-side crops at the
   bitrate closest to ``--target_bpp`` per image, ``report.html`` (self-contained) and ``summary.json``.

A second run with the same checkpoints, images and metrics reads everything from the cache.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import html
import io
import json
import math
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from common import plots
from common.baselines import available_codecs, encode_decode, get_codec, sweep_cached
from common.checkpoint import load_model
from common.cli import HelpFormatter
from common.datasets import KNOWN_SETS, file_fingerprints, list_images, load_image, resolve_set
from common.errors import CheckpointError, DataError, VAEGANError
from common.evaluation import add_lpips_net_flag, compressai_json, evaluate_checkpoint, perceptual_metrics
from common.files import atomic_write
from common.metrics import file_bpp, psnr
from common.rd import LOWER_IS_BETTER, bd_metric, bd_rate, load_curve
from common.registry import FAMILIES
from common.zoo import shipped

CACHE_VERSION = 2  # bump when the evaluation of a model point changes
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEFAULT_ANCHORS = ("hevc", "jpeg420")
BD_METRICS = ("psnr-rgb", "ms-ssim-rgb", "lpips")  # each where both curves have it
SLIDER_BUDGET_BYTES = 20 * 2**20  # images in report.html before base64; above it, sliders show crops
# (file stem, metric, x range or None, title)
FIGURES = (
    ("rd_psnr", "psnr-rgb", None, "PSNR vs rate"),
    ("rd_psnr_0-1bpp", "psnr-rgb", (0.0, 1.0), "PSNR vs rate, 0-1 bpp"),
    ("rd_ms_ssim", "ms-ssim-rgb", None, "MS-SSIM vs rate"),
    ("rd_ms_ssim_db", "ms-ssim-db", None, "MS-SSIM (dB) vs rate"),
    ("rd_lpips", "lpips", None, "LPIPS vs rate"),
    ("rd_fid", "fid", None, "patch FID vs rate"),
    ("rd_kid", "kid", None, "patch KID vs rate"),
)


def model_flag(family: str) -> str:
    """``beta_vae_gan`` -> ``beta_model_path``: the user's flag names, derived from the registry."""
    return f"{family.split('_')[0]}_model_path"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compare the VAE-GAN families with classical codecs: RD figures, BD-rates, crops, "
        "and a self-contained report.html.",
        formatter_class=HelpFormatter,
    )
    for family in FAMILIES:
        flag = model_flag(family)
        p.add_argument(
            f"--{flag}",
            f"--{flag.replace('_', '-')}",
            dest=flag,
            nargs="+",
            default=None,
            help=f"{family} checkpoints (one per rate) or folders of .pth; "
            "with no model flag at all, every family's shipped checkpoints",
        )
    p.add_argument(
        "--output_dir",
        "--output-dir",
        dest="output_dir",
        default="./comparison_results",
        help="figures, BD tables, crops, summary.json, report.html",
    )
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", default="data", help="root of --dataset")
    p.add_argument(
        "--dataset",
        default="kodak",
        help="kodak, clic, div2k or a folder; a missing known set falls back to scikit-image's sample photos",
    )
    p.add_argument("--codecs", nargs="*", default=None, help="classical codecs (default: all installed)")
    p.add_argument("--results", nargs="+", default=[], help="extra CompressAI JSON curves to overlay")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--no_fid", "--no-fid", dest="no_fid", action="store_true", help="skip patch FID/KID")
    add_lpips_net_flag(p)
    p.add_argument(
        "--cache_dir",
        "--cache-dir",
        dest="cache_dir",
        default="~/.cache/vaegan",
        help="model points, codec sweeps, matched-rate crops and FID features are cached here",
    )
    p.add_argument(
        "--codec_results",
        "--codec-results",
        dest="codec_results",
        nargs="+",
        default=[],
        help="folders of published codec sweeps (run_baselines.py JSONs, e.g. results/kodak) used instead "
        "of re-running a sweep when its key matches: codec settings, library versions, qualities, image bytes",
    )
    p.add_argument(
        "--target_bpp",
        "--target-bpp",
        dest="target_bpp",
        type=float,
        default=0.25,
        help="rate of the side-by-sides: each curve's nearest point, labelled with its real bpp",
    )
    p.add_argument(
        "--crop_images",
        "--crop-images",
        dest="crop_images",
        nargs="+",
        default=None,
        help="images (file name or stem) for side-by-sides and sliders, or 'all' (default: the first two)",
    )
    p.add_argument(
        "--anchors", nargs="+", default=list(DEFAULT_ANCHORS), help="BD-rate anchors (codec or curve names)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, for the models and metrics")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


# --------------------------------------------------------------------------------------------
# Inputs


def sample_images(folder: Path) -> Path:
    """scikit-image's colour sample photos saved as PNG in ``folder`` (written once, then reused)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS:
        path = folder / f"{name}.png"
        if not path.is_file():
            image = np.asarray(getattr(data, name)())[..., :3].astype(np.uint8)
            atomic_write(path, lambda f, image=image: Image.fromarray(image).save(f, format="PNG"))
    return folder


def resolve_files(args, cache_root: Path) -> tuple[list[Path], str, list[str]]:
    """(image files, set name, notes); a known set missing from --data_dir falls back to sample photos."""
    notes = []
    if Path(args.dataset).is_dir():
        folder = Path(args.dataset)
    else:
        try:
            folder = resolve_set(args.data_dir, args.dataset)
        except DataError as exc:
            if args.dataset.lower() not in KNOWN_SETS:
                raise
            folder = sample_images(cache_root / "sample_images")
            notes.append(f"{exc}; using scikit-image's {len(SAMPLE_PHOTOS)} sample photos ({folder}) instead")
            print(notes[-1])
    files = list_images(folder)
    if args.limit:
        files = files[: args.limit]
    return files, folder.name, notes


def expand_checkpoints(paths: list[str], flag: str) -> list[Path]:
    """Checkpoint files, with each folder replaced by its ``*.pth`` files (sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.pth"))
            if not found:
                raise CheckpointError(f"--{flag}: no .pth files in folder {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


def load_families(args) -> tuple[dict[str, list[tuple[Path, object]]], list[str]]:
    """{family: [(checkpoint, model)]}, every checkpoint verified before any work starts."""
    chosen = {f: getattr(args, model_flag(f)) for f in FAMILIES if getattr(args, model_flag(f))}
    notes = []
    if not chosen:
        chosen = {f: [str(p) for p, _ in shipped(f)] for f in FAMILIES}
        chosen = {f: paths for f, paths in chosen.items() if paths}
        notes.append(
            "no model flags: shipped checkpoints of "
            + (", ".join(f"{f} ({len(p)})" for f, p in chosen.items()) or "no family")
        )
        print(notes[-1])
    models = {}
    for family, paths in chosen.items():
        flag = model_flag(family)
        models[family] = []
        for path in expand_checkpoints(paths, flag):
            try:
                model = load_model(path, expect_family=family)
            except CheckpointError as exc:
                raise CheckpointError(f"--{flag}: {exc}") from None
            models[family].append((path, model.to(args.device)))
    return models, notes


def rate_points(path: Path, model) -> list[tuple[object, str]]:
    """(model view, point name) per rate point the checkpoint offers (``CompressionModel.rate_points``).

    VQ names match ``vq_vae_gan/evaluate.py --stages``: ``<stem>-stages<k>``.
    """
    return [(view, path.stem + suffix) for view, suffix in model.rate_points()]


def load_results_file(path: str) -> dict:
    """A published/extra curve in CompressAI's schema (needs results.bpp and one metric)."""
    curve = load_curve(path, "--results")
    if not any(m in curve["results"] for m in ("psnr-rgb", "ms-ssim-rgb", "lpips", "fid")):
        raise VAEGANError(f"--results {path}: no psnr-rgb, ms-ssim-rgb, lpips or fid values")
    return curve | {"kind": "published", "id": Path(path).stem}


# --------------------------------------------------------------------------------------------
# Caches


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def write_json(path: Path, obj) -> None:
    """Atomic: a killed run never leaves a half-written cache entry that looks complete."""
    atomic_write(path, json.dumps(obj, indent=2).encode(), make_parents=True)


def metrics_signature(lpips_model, fid_reference) -> dict:
    rand = bool(getattr(lpips_model, "pnet_rand", False))
    lp = None if lpips_model is None else f"{getattr(lpips_model, 'pnet_type', '?')}{'-rand' if rand else ''}"
    return {"lpips": lp, "fid": None if fid_reference is None else fid_reference.patch_size}


def model_curve(
    family: str,
    checkpoints: list[tuple[Path, object]],
    files: list[Path],
    cache: Path,
    lpips_model,
    fid_reference,
    progress: bool,
) -> dict:
    """A family's CompressAI curve; each point evaluated once per (model identity, stages, files, metrics)."""
    points = []
    for path, model in checkpoints:
        for view, name in rate_points(path, model):
            key = digest(
                {
                    "version": CACHE_VERSION,
                    "model_id": view.identity().hex(),
                    "settings": view.view_settings(),
                    "files": file_fingerprints(files),
                    "metrics": metrics_signature(lpips_model, fid_reference),
                }
            )
            folder = cache / family / f"{name}-{key}"
            done = folder / "summary.json"
            if done.is_file():
                summary = json.loads(done.read_text())
                print(f"{family} {name}: cached evaluation read from {folder}")
            else:
                summary, _ = evaluate_checkpoint(
                    view,
                    files,
                    folder,
                    save_recon=True,
                    progress=progress,
                    lpips_model=lpips_model,
                    fid_reference=fid_reference,
                )
                summary |= {"checkpoint": str(path), "point": name}
                write_json(done, summary)
            points.append(summary | {"checkpoint": str(path), "point": name, "dir": str(folder)})
    description = f"{family}, {len(checkpoints)} checkpoint(s), {len(files)} images, real file sizes"
    curve = compressai_json(family, description, points)
    ordered = sorted(points, key=lambda p: p["bpp"])
    curve |= {
        "kind": "model",
        "id": family,
        "checkpoints": [p["checkpoint"] for p in ordered],
        "points": [p["point"] for p in ordered],
        "point_dirs": [p["dir"] for p in ordered],
    }
    return curve


def model_point_at(curve: dict, image_path: Path, target: float) -> dict:
    """The point of a model curve whose bpp on this image is closest to ``target`` (from per_image.csv)."""
    best = None
    for name, folder in zip(curve["points"], curve["point_dirs"]):
        with open(Path(folder) / "per_image.csv", newline="") as f:
            row = next((r for r in csv.DictReader(f) if r["image"] == image_path.name), None)
        if row is None:
            continue
        cand = {
            "label": curve["name"],
            "setting": name,
            "bpp": float(row["bpp"]),
            "psnr-rgb": float(row["psnr-rgb"]),
            "reconstruction": str(Path(folder) / "reconstructions" / f"{image_path.stem}.png"),
        }
        if best is None or abs(cand["bpp"] - target) < abs(best["bpp"] - target):
            best = cand
    return best


def codec_point_at(name: str, image_path: Path, image: np.ndarray, target: float, cache: Path) -> dict:
    """The codec quality whose bpp on this image is closest to ``target``, found by bisection, cached.

    A codec's qualities are ordered so sizes grow along the list (common.baselines), so about
    log2(#qualities) + 1 encodes find the two settings that bracket the target.
    """
    codec = get_codec(name)
    key = digest(
        {
            "version": CACHE_VERSION,
            "codec": codec.description,
            "qualities": list(codec.qualities),
            "file": file_fingerprints([image_path]),
            "target": target,
        }
    )
    meta_path = cache / f"{name}-{image_path.stem}-{key}.json"
    png_path = meta_path.with_suffix(".png")
    if meta_path.is_file() and png_path.is_file():
        return json.loads(meta_path.read_text()) | {"reconstruction": str(png_path)}
    h, w = image.shape[:2]
    tried: dict[int, tuple[float, np.ndarray]] = {}

    def at(i: int) -> float:
        if i not in tried:
            data, decoded = encode_decode(name, image, codec.qualities[i])
            tried[i] = (file_bpp(len(data), h, w), decoded)
        return tried[i][0]

    lo, hi = 0, len(codec.qualities) - 1
    while lo < hi:  # first quality whose bpp reaches the target
        mid = (lo + hi) // 2
        if at(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [i for i in (lo - 1, lo) if 0 <= i < len(codec.qualities)]
    best = min(candidates, key=lambda i: abs(at(i) - target))
    bpp, decoded = tried[best]
    meta = {
        "label": codec.name,
        "setting": f"quality {codec.qualities[best]:g}",
        "bpp": bpp,
        "psnr-rgb": psnr(image, decoded),
    }
    cache.mkdir(parents=True, exist_ok=True)
    Image.fromarray(decoded).save(png_path)
    write_json(meta_path, meta)
    return meta | {"reconstruction": str(png_path)}


# --------------------------------------------------------------------------------------------
# Tables


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


def _fmt(v, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


BD_HEADERS = ["anchor", "test", "metric", "BD-rate", "BD-metric", "overlap (metric)", "overlap (bpp)", "note"]


def bd_cells(r: dict) -> list[str]:
    """One table row as text, shared by bd_rate.md and report.html."""
    metric_spec = ".2f" if r["metric"] == "psnr-rgb" else ".4f"

    def span(lo, hi, spec):
        return "none" if lo is None else f"{_fmt(lo, spec)} – {_fmt(hi, spec)}"

    rate = _fmt(r["bd_rate_percent"], "+.1f") + ("%" if r["bd_rate_percent"] is not None else "")
    return [
        r["anchor"],
        r["test"],
        r["metric"],
        rate,
        _fmt(r["bd_metric"], "+" + metric_spec),
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


# --------------------------------------------------------------------------------------------
# HTML


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
 padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
code,pre{background:#f4f4f4;padding:.1em .3em;border-radius:3px;font-size:.9em}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:560px;width:100%;border:1px solid #eee}
img.wide{max-width:100%;border:1px solid #eee}
.slider{position:relative;display:inline-block;max-width:100%;line-height:0;user-select:none}
.slider img{max-width:100%;display:block}
.slider img.recon{position:absolute;top:0;left:0;width:100%;height:100%;clip-path:inset(0 0 0 50%)}
.slider .bar{position:absolute;top:0;bottom:0;left:50%;width:2px;background:#ff0;pointer-events:none}
.slider .tag{position:absolute;top:4px;padding:2px 6px;background:rgba(0,0,0,.6);color:#fff;
 font-size:12px;line-height:1.4}
.controls{margin:.5em 0}.controls input[type=range]{width:min(600px,90%)}
.note{color:#555}
"""

JS = """
function setSplit(box, v){
  box.querySelectorAll('img.recon').forEach(function(i){i.style.clipPath='inset(0 0 0 '+v+'%)';});
  box.querySelector('.bar').style.left=v+'%';
}
function choose(sel){
  var box=document.getElementById(sel.dataset.target);
  box.querySelectorAll('img.recon').forEach(function(i){i.style.display=(i.dataset.key===sel.value)?'':'none';});
  var opt=sel.options[sel.selectedIndex];box.querySelector('.tag.right').textContent=opt.text;
}
document.querySelectorAll('select.codec').forEach(function(s){s.addEventListener('change',function(){choose(s);});choose(s);});
document.querySelectorAll('input.split').forEach(function(r){
  var box=document.getElementById(r.dataset.target);
  r.addEventListener('input',function(){setSplit(box,r.value);});setSplit(box,r.value);
});
function checkImages(){
  var imgs=Array.prototype.slice.call(document.images);
  var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);});
  document.body.dataset.imagesTotal=imgs.length;
  document.body.dataset.imagesLoaded=bad.length?('missing:'+bad.length):'all';
  if(!bad.length){document.title=document.title+' [all '+imgs.length+' images loaded]';}
}
if(document.readyState==='complete'){checkImages();}else{window.addEventListener('load',checkImages);}
"""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{html.escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _best(results: dict, key: str) -> str:
    values = [v for v in results.get(key, []) if v is not None and v == v]
    best = min if key in LOWER_IS_BETTER else max
    return _fmt(best(values), ".3f") if values else "—"


def curves_table(curves: list[dict]) -> str:
    rows = []
    for c in curves:
        r = c["results"]
        rows.append(
            [
                c["name"],
                c["kind"],
                str(len(r["bpp"])),
                f"{min(r['bpp']):.3f} – {max(r['bpp']):.3f}",
                _best(r, "psnr-rgb"),
                _best(r, "ms-ssim-rgb"),
                _best(r, "lpips"),
                c.get("description", ""),
            ]
        )
    return _table(
        ["curve", "kind", "points", "bpp range", "best PSNR dB", "best MS-SSIM", "best LPIPS", "description"],
        rows,
        {2, 4, 5, 6},
    )


def slider_html(index: int, image_name: str, original: bytes, recons: list[tuple[str, str, bytes]]) -> str:
    """Original on the left, the chosen reconstruction on the right of a draggable split."""
    box = f"slider{index}"
    options = "".join(
        f'<option value="k{j}">{html.escape(label)}</option>' for j, (label, _, _) in enumerate(recons)
    )
    layers = "".join(
        f'<img class="recon" data-key="k{j}" alt="{html.escape(label)}" src="{data_uri(png, "image/png")}">'
        for j, (label, _, png) in enumerate(recons)
    )
    return (
        f"<h3>{html.escape(image_name)}</h3>"
        f'<div class="controls">reconstruction: <select class="codec" data-target="{box}">{options}</select> '
        f'split: <input class="split" type="range" min="0" max="100" value="50" data-target="{box}"></div>'
        f'<div class="slider" id="{box}"><img class="orig" alt="original {html.escape(image_name)}" '
        f'src="{data_uri(original, "image/png")}">{layers}<div class="bar"></div>'
        '<span class="tag" style="left:4px">original</span><span class="tag right" style="right:4px"></span></div>'
    )


def report_html(
    title: str,
    command: str,
    notes: list[str],
    curves: list[dict],
    figures: list[tuple[str, bytes]],
    bd_md_rows: list[dict],
    bd_notes: list[str],
    crops: list[tuple[str, bytes]],
    sliders: list[str],
    slider_note: str,
) -> str:
    bd_table = _table(BD_HEADERS, [bd_cells(r) for r in bd_md_rows], {3, 4})
    figs = "".join(
        f'<img alt="{html.escape(name)}" title="{html.escape(name)}" src="{data_uri(png, "image/png")}">'
        for name, png in figures
    )
    crop_html = "".join(
        f'<h3>{html.escape(name)}</h3><img class="wide" alt="side by side {html.escape(name)}" '
        f'src="{data_uri(png, "image/png")}">'
        for name, png in crops
    )
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Every bpp counts every byte of a real file (header included); metrics are computed on the decoded
8-bit images. Learned models: solid lines with markers; classical codecs: dashed; published curves: dotted.</p>
<pre>{html.escape(command)}</pre>
<ul class="note">{note_items}</ul>
<h2>Curves</h2>{curves_table(curves)}
<h2>Rate-distortion</h2><div class="figs">{figs}</div>
<h2>BD-rate</h2>
<p>{html.escape(BD_EXPLAINED)}</p>{bd_table}
<ul class="note">{"".join(f"<li>{html.escape(n)}</li>" for n in bd_notes)}</ul>
<h2>Side by side at matched bitrate</h2>{crop_html}
<h2>Before / after</h2><p class="note">{html.escape(slider_note)}</p>{"".join(sliders)}
<script>{JS}</script>
</body></html>
"""


# --------------------------------------------------------------------------------------------
# The command


def choose_images(files: list[Path], names: list[str] | None) -> list[Path]:
    if not names:
        return files[:2]
    if [n.lower() for n in names] == ["all"]:
        return list(files)
    chosen = []
    for n in names:
        match = [f for f in files if n in (f.name, f.stem)]
        if not match:
            raise VAEGANError(f"--crop_images: {n!r} is not among the {len(files)} evaluated images")
        chosen.append(match[0])
    return chosen


def side_by_sides(curves: list[dict], crop_files: list[Path], target: float, cache_root: Path, out: Path):
    """Per chosen image: the point of every model/codec closest to ``target`` bpp, drawn as one crop figure.

    Returns (figure PNGs for the report, what was shown for summary.json, (name, original,
    [(point, reconstruction)]) for the sliders).
    """
    crops, info, slider_sets = [], [], []
    (out / "crops").mkdir(parents=True, exist_ok=True)
    for path in crop_files:
        image, _ = load_image(path)
        chosen = []
        for c in curves:
            if c["kind"] == "model":
                point = model_point_at(c, path, target)
            elif c["kind"] == "codec":
                point = codec_point_at(c["id"], path, image, target, cache_root / "matched")
            else:  # published curves come without reconstructions
                continue
            if point is not None:
                chosen.append(point)
        recon = [(p, np.asarray(Image.open(p["reconstruction"]).convert("RGB"))) for p in chosen]
        panels = [
            (p["label"], r, f"{p['setting']}: {p['bpp']:.3f} bpp, {p['psnr-rgb']:.2f} dB") for p, r in recon
        ]
        fig, box, inset = plots.side_by_side(
            image, panels, title=f"{path.name} at about {target:g} bpp (closest setting per codec)"
        )
        fig.savefig(out / "crops" / f"{path.stem}.png")
        crops.append((path.name, plots.figure_png(fig)))
        info.append(
            {
                "image": path.name,
                "crop_box_top_left_height_width": box,
                "inset_box_in_crop": inset,
                "points": [{k: v for k, v in p.items() if k != "reconstruction"} for p in chosen],
            }
        )
        slider_sets.append((path.name, image, recon))
    return crops, info, slider_sets


def images_shown(slider_sets: list, total: int) -> str:
    """Which images the side-by-sides and sliders show, said in the report."""
    names = ", ".join(name for name, _, _ in slider_sets)
    if len(slider_sets) == total:
        return f"Every image of the set ({names})."
    return (
        f"{len(slider_sets)} of the {total} images ({names}), chosen with --crop_images "
        "(the first two by default; --crop_images all shows every one)."
    )


def slider_sections(slider_sets: list) -> tuple[list[str], str, str]:
    """Before/after sliders with full images as PNG, or with 512 px detail crops when those exceed the budget."""

    def encoded(region):
        out = []
        for name, image, recon in slider_sets:
            box = region(image)
            items = [
                (
                    f"{p['label']} ({p['setting']}): {p['bpp']:.3f} bpp, {p['psnr-rgb']:.2f} dB",
                    p["label"],
                    png_bytes(plots.crop(r, box)),
                )
                for p, r in recon
            ]
            out.append((name, png_bytes(plots.crop(image, box)), items))
        return out

    mode, sets = "full", encoded(lambda image: (0, 0, *image.shape[:2]))
    if sum(len(o) + sum(len(i[2]) for i in items) for _, o, items in sets) > SLIDER_BUDGET_BYTES:
        mode, sets = "crops", encoded(lambda image: plots.detail_box(image, 512))
    note = {
        "full": "Full images as lossless PNG. Drag the split: original on the left, reconstruction on the right.",
        "crops": "Full images would make this file too large, so each slider shows the most detailed 512 px "
        "square, as lossless PNG. Drag the split: original on the left, reconstruction on the right.",
    }[mode]
    return [slider_html(i, name, orig, items) for i, (name, orig, items) in enumerate(sets)], note, mode


def compare_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = "python compare_models.py " + shlex.join(argv_used)
    progress = not args.quiet
    cache_root = Path(args.cache_dir).expanduser()
    out = Path(args.output_dir)
    if args.target_bpp <= 0:
        raise VAEGANError(f"--target_bpp must be positive, got {args.target_bpp}")
    if args.limit is not None and args.limit < 1:
        raise VAEGANError(f"--limit must be at least 1, got {args.limit}")

    installed = available_codecs()
    codecs = installed if args.codecs is None else args.codecs
    for name in codecs:
        get_codec(name)  # unknown names fail here, listing the known ones
        if name not in installed:
            get_codec(name).library()  # raises the install hint
    extra = [load_results_file(p) for p in args.results]
    families, notes = load_families(args)
    files, set_name, data_notes = resolve_files(args, cache_root)
    notes = data_notes + notes
    crop_files = choose_images(files, args.crop_images)
    fingerprint = digest(file_fingerprints(files))

    metric_args = SimpleNamespace(
        device=args.device, lpips_net=args.lpips_net, no_fid=args.no_fid, cache_dir=cache_root / "fid_stats"
    )
    lpips_model, fid_reference = perceptual_metrics(metric_args, files)
    if lpips_model is None:
        notes.append("LPIPS not measured: its backbone weights are not available offline")
    if fid_reference is None:
        notes.append(
            "FID/KID not measured" + (" (--no_fid)" if args.no_fid else ": Inception weights missing")
        )

    curves = []
    for family, checkpoints in families.items():
        curves.append(
            model_curve(
                family, checkpoints, files, cache_root / "models", lpips_model, fid_reference, progress
            )
        )
    for name in codecs:
        curve = sweep_cached(
            name,
            files,
            cache_root / "codecs" / f"{set_name}-{fingerprint}",
            progress=progress,
            lpips_model=lpips_model,
            fid_reference=fid_reference,
            published=args.codec_results,
        )
        curves.append(curve | {"kind": "codec", "id": name})
    curves += extra
    if not curves:
        raise VAEGANError("nothing to compare: no model checkpoints, no codecs and no --results files")
    for c in curves:
        if "ms-ssim-rgb" in c["results"]:
            c["results"]["ms-ssim-db"] = plots.ms_ssim_db(c["results"]["ms-ssim-rgb"])

    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for stem, metric, bpp_range, title in FIGURES:
        fig = plots.rd_figure(curves, metric, bpp_range, f"{title} ({set_name}, {len(files)} images)")
        if fig is None:
            continue
        plots.save_figure(fig, out / stem)
        figures.append((stem, plots.figure_png(fig)))
    print(f"figures: {', '.join(s for s, _ in figures)} (.png and .svg) in {out}")

    rows, bd_notes = bd_rows(curves, args.anchors)
    write_bd_tables(rows, bd_notes, out)

    crops, side_info, slider_sets = side_by_sides(curves, crop_files, args.target_bpp, cache_root, out)
    sliders, slider_note, slider_mode = slider_sections(slider_sets)
    slider_note = images_shown(slider_sets, len(files)) + " " + slider_note

    title = f"Learned vs classical compression on {set_name} ({len(files)} images)"
    page = report_html(title, command, notes, curves, figures, rows, bd_notes, crops, sliders, slider_note)
    (out / "report.html").write_text(page)
    summary = {
        "command": command,
        "argv": argv_used,
        "dataset": set_name,
        "files": [str(f) for f in files],
        "notes": notes,
        "target_bpp": args.target_bpp,
        "curves": curves,
        "bd_rate": rows,
        "bd_rate_notes": bd_notes,
        "side_by_side": side_info,
        "figures": [s for s, _ in figures],
        "report_html_bytes": len(page.encode()),
        "slider_images": slider_mode,
    }
    write_json(out / "summary.json", summary)
    print(f"wrote {out / 'report.html'} ({len(page.encode()) / 2**20:.1f} MB), bd_rate.md/.csv, summary.json")
    return 0
