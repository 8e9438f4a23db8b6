"""The comparison's steps: image set, model points (cached), codec points at a target rate, crops.

``compare_models.py`` (repo root) is the pipeline that calls them in order:

1. image set (:func:`resolve_files`): ``--dataset`` under ``--data_dir``, or scikit-image's sample
   photos when it is missing;
2. one curve per family and decode variant (:func:`decode_variants`, :func:`model_curve`; e.g. the
   β realism decoder's realistic end is a curve of its own): every rate point of every checkpoint evaluated with real
   files by :func:`common.evaluation.evaluate_checkpoint`, cached per point (identity + view settings,
   and all weights when its decode uses some outside the identity);
3. one curve per classical codec (:func:`common.baselines.sweep_cached`), plus ``--results`` JSONs;
4. figures (:mod:`common.plots`), BD tables (:func:`common.rd.bd_rows`), side-by-side crops at the
   bitrate closest to ``--target_bpp`` per image (:func:`side_by_sides`), ``report.html``
   (:mod:`common.report_html`) and ``summary.json``.

A second run with the same checkpoints, images and metrics reads everything from the cache.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from common import plots
from common.baselines import encode_decode, get_codec, spread
from common.checkpoint import load_model
from common.cli import HelpFormatter
from common.datasets import KNOWN_SETS, file_fingerprints, list_images, load_image, resolve_set
from common.errors import CheckpointError, DataError, VAEGANError
from common.evaluation import add_lpips_net_flag, compressai_json, evaluate_checkpoint
from common.files import atomic_write, json_digest, read_json, write_json
from common.metrics import file_bpp, psnr
from common.rd import load_curve
from common.registry import FAMILIES
from common.zoo import shipped

CACHE_VERSION = 2  # bump when the evaluation of a model point changes
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEFAULT_ANCHORS = ("hevc", "jpeg420")
SAMPLE_SET = "sample_images"  # the fallback set's folder name, under --cache_dir
SAMPLE_RATE_POINTS = 5  # the sample photos are a first look: half the points, half the minutes
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
    p.add_argument(
        "--rate_points",
        "--rate-points",
        dest="rate_points",
        type=int,
        default=None,
        help=f"at most N rate points per checkpoint and per codec, evenly spread over its range; "
        f"default: all of them, or {SAMPLE_RATE_POINTS} on the sample photos (a quick first look)",
    )
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
            folder = sample_images(cache_root / SAMPLE_SET)
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


def rate_points(path: Path, model, variant: str = "") -> list[tuple[object, str]]:
    """(model view, point name) per rate point the checkpoint offers (``CompressionModel.rate_points``).

    VQ names match ``vq_vae_gan/evaluate.py --stages``: ``<stem>-stages<k>``; a decode variant's
    name goes after the stem (``<stem>-realism1-q3``).
    """
    return [(view, path.stem + variant + suffix) for view, suffix in model.rate_points()]


def load_results_file(path: str) -> dict:
    """A published/extra curve in CompressAI's schema (needs results.bpp and one metric)."""
    curve = load_curve(path, "--results")
    if not any(m in curve["results"] for m in ("psnr-rgb", "ms-ssim-rgb", "lpips", "fid")):
        raise VAEGANError(f"--results {path}: no psnr-rgb, ms-ssim-rgb, lpips or fid values")
    return curve | {"kind": "published", "id": Path(path).stem}


# --------------------------------------------------------------------------------------------
# Caches


def digest(obj) -> str:
    """A model point's or an image set's cache key (24 hex digits, as the cache folders are named)."""
    return json_digest(obj, 24)


def metrics_signature(lpips_model, fid_reference) -> dict:
    rand = bool(getattr(lpips_model, "pnet_rand", False))
    lp = None if lpips_model is None else f"{getattr(lpips_model, 'pnet_type', '?')}{'-rand' if rand else ''}"
    return {"lpips": lp, "fid": None if fid_reference is None else fid_reference.patch_size}


def point_identity(view) -> dict:
    """What a measured point depends on: the model identity and view settings, and every weight
    when its decode uses some outside the identity (a realism decoder above realism 0)."""
    key = {"model_id": view.identity().hex(), "settings": view.view_settings()}
    if len(view.decoding_state()) != len(view.coding_state()):
        key["weights"] = view.weights_digest()
    return key


def decode_variants(checkpoints: list[tuple[Path, object]]) -> dict[str, list[tuple[Path, object]]]:
    """{curve suffix: [(checkpoint, view)]}: one curve per decode variant the checkpoints offer
    (``CompressionModel.decode_variants``: the default decode, and e.g. the β realism decoder's
    realistic end as ``-realism1``)."""
    variants: dict[str, list[tuple[Path, object]]] = {}
    for path, model in checkpoints:
        for view, suffix in model.decode_variants():
            variants.setdefault(suffix, []).append((path, view))
    return variants


def model_curve(
    family: str,
    checkpoints: list[tuple[Path, object]],
    files: list[Path],
    cache: Path,
    lpips_model,
    fid_reference,
    progress: bool,
    variant: str = "",
    max_points: int | None = None,
) -> dict:
    """A family's CompressAI curve; each point evaluated once per (model identity, stages, files, metrics).

    ``max_points``: at most that many of each checkpoint's rate points, evenly spread over its range."""
    points = []
    for path, model in checkpoints:
        for view, name in spread(rate_points(path, model, variant), max_points):
            key = digest(
                {
                    "version": CACHE_VERSION,
                    **point_identity(view),
                    "files": file_fingerprints(files),
                    "metrics": metrics_signature(lpips_model, fid_reference),
                }
            )
            folder = cache / family / f"{name}-{key}"
            done = folder / "summary.json"
            summary = read_json(done)
            if isinstance(summary, dict):
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
    name = family + variant
    description = f"{name}, {len(checkpoints)} checkpoint(s), {len(files)} images, real file sizes"
    curve = compressai_json(name, description, points)
    ordered = sorted(points, key=lambda p: p["bpp"])
    curve |= {
        "kind": "model",
        "id": name,
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
            "bitstream": str(Path(folder) / "bitstreams" / f"{image_path.stem}.vgan"),
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
