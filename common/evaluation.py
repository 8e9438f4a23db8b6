"""Evaluate checkpoints on an image set with real files: every bpp is read from bytes on disk.

Per image: compress to ``bitstreams/NAME.vgan``, read the file back, decode it, and score the
decoded 8-bit image (PSNR, SSIM, MS-SSIM, LPIPS when its weights are present). Per checkpoint:
FID and KID on HiFiC's 256 px patches, against the originals' Inception features, which are cached
on disk per image set (:class:`ReferenceFeatures`). Output: one CompressAI-schema JSON (one point
per checkpoint, sorted by bpp), a per-image CSV and the reconstructions for each checkpoint.
Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common import zoo
from common.checkpoint import load_model
from common.cli import HelpFormatter
from common.codec import compress_image, decompress_bytes
from common.datasets import file_fingerprints, list_images, load_image, resolve_set, to_tensor
from common.errors import VAEGANError
from common.files import atomic_write, json_digest
from common.layers import pad_to_multiple
from common.losses import rate_bpp
from common.metrics import (
    FID_WEIGHTS_FILE,
    InceptionFeatures,
    MetricError,
    PatchFID,
    extract_patches,
    file_bpp,
    load_lpips,
    score_image,
)

# Per image, averaged over the set; "lpips" only when its backbone weights are present.
IMAGE_KEYS = (
    "bpp",
    "estimated_bpp",
    "psnr-rgb",
    "ms-ssim-rgb",
    "ssim-rgb",
    "lpips",
    "compression_ratio",
    "compression_ratio_24bpp",
    "encoding_time",
    "decoding_time",
)
# Per checkpoint, over all patches of the set (HiFiC protocol); only when the Inception weights are present.
FID_KEYS = ("fid", "kid", "kid_std", "num_patches")
# Every key a rate point can have, in the order they are printed and written; absent ones are left out.
SUMMARY_KEYS = IMAGE_KEYS + FID_KEYS
DEFAULT_FID_CACHE = "~/.cache/vaegan/fid_stats"
FID_CACHE_VERSION = 2  # bump when the patching or feature extraction changes


@torch.no_grad()
def estimated_bpp(model, image: np.ndarray) -> float:
    """The model's own rate estimate for the quantized latents, per original pixel."""
    x = to_tensor(image).to(next(model.parameters()).device)
    out = model(pad_to_multiple(x, model.pad_multiple))
    return float(sum(rate_bpp(out.likelihoods, image.shape[0] * image.shape[1]).values()))


class ReferenceFeatures:
    """Inception features of the originals' FID/KID patches for one image set, cached on disk.

    The cache file is named by a hash of the image list (name, size and sha256 of every file), the
    patch protocol (size, half-size shift) and the Inception weights file, so a changed set or
    protocol never reuses stale features. It holds the features themselves, not
    only mean and covariance, because KID needs them. They are stored as float32, which is what
    the network outputs, so loading them back gives exactly the float64 values computed.
    """

    def __init__(
        self,
        files: list[Path],
        features: InceptionFeatures,
        cache_dir: str | os.PathLike | None = DEFAULT_FID_CACHE,
        patch_size: int = 256,
    ):
        self.features = features
        self.patch_size = patch_size
        self.files = [str(Path(f).resolve()) for f in files]
        key = {
            "version": FID_CACHE_VERSION,
            "patch_size": patch_size,
            "shift": patch_size // 2,
            "weights": FID_WEIGHTS_FILE,
            "files": file_fingerprints(self.files),
        }
        digest = json_digest(key, 20)
        set_name = Path(self.files[0]).parent.name if self.files else "empty"
        self.path = (
            Path(cache_dir).expanduser() / f"{set_name}-p{patch_size}-{digest}.npz" if cache_dir else None
        )
        self._by_file: dict[str, np.ndarray] = {}
        self.computed = 0  # images whose original patches went through the network in this process
        self.loaded = self._load()

    def _load(self) -> bool:
        if self.path is None or not self.path.is_file():
            return False
        try:
            with np.load(self.path, allow_pickle=False) as data:
                names, counts, feats = list(data["files"]), data["counts"], data["features"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            print(f"FID reference cache {self.path} is unreadable ({exc}); recomputing it")
            return False
        ends = np.cumsum(counts)
        for name, end, count in zip(names, ends, counts):
            self._by_file[str(name)] = feats[end - count : end].astype(np.float64)
        print(f"FID reference: features of {int(counts.sum())} original patches read from {self.path}")
        return True

    def original_features(self, path: Path, image: np.ndarray) -> np.ndarray:
        """Features (P, 2048) of the original image's patches: from the cache, or computed now."""
        name = str(Path(path).resolve())
        if name not in self._by_file:
            self._by_file[name] = self.features(extract_patches(image, self.patch_size))
            self.computed += 1
        return self._by_file[name]

    def save(self) -> None:
        """Write the cache (atomically) if features were computed since it was read."""
        if self.path is None or self.computed == 0:
            return
        names = [f for f in self.files if f in self._by_file]
        feats = [self._by_file[f] for f in names]
        try:
            atomic_write(
                self.path,
                lambda f: np.savez(
                    f,
                    files=np.array(names, dtype=str),
                    counts=np.array([len(x) for x in feats], dtype=np.int64),
                    features=np.concatenate(feats).astype(np.float32),
                ),
                make_parents=True,
            )
        except VAEGANError as exc:
            print(f"FID reference: {exc}; features not cached")
            return
        self.computed = 0
        print(
            f"FID reference: features of {sum(len(x) for x in feats)} original patches cached in {self.path}"
        )


def evaluate_checkpoint(
    model,
    files: list[Path],
    out_dir: Path,
    save_recon: bool = True,
    progress: bool = True,
    lpips_model=None,
    fid_reference: ReferenceFeatures | None = None,
) -> tuple[dict, list[dict]]:
    """Returns (averages, per-image rows). Images that cannot be read are reported and skipped.

    ``lpips_model`` (from :func:`common.metrics.load_lpips`) adds an ``lpips`` column;
    ``fid_reference`` adds ``fid``, ``kid``, ``kid_std`` and ``num_patches`` to the averages.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bitstreams").mkdir(exist_ok=True)
    if save_recon:
        (out_dir / "reconstructions").mkdir(exist_ok=True)
    patch_fid = None
    if fid_reference is not None:
        patch_fid = PatchFID(features=fid_reference.features, patch_size=fid_reference.patch_size)
    compress_image(model, np.zeros((64, 64, 3), dtype=np.uint8))  # warm-up, not timed
    rows = []
    # the point's folder names checkpoint and setting (e.g. vq_vae_gan-k512x3-stages2, ...-q1-top2)
    for path in tqdm(files, desc=f"{model.family}: {out_dir.name}", disable=not progress):
        try:
            image, notes = load_image(path)
        except VAEGANError as exc:
            tqdm.write(f"skipped: {exc}")
            continue
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        data = compress_image(model, image)
        t1 = time.perf_counter()
        bitstream = out_dir / "bitstreams" / f"{path.stem}.vgan"
        bitstream.write_bytes(data)
        data_back = bitstream.read_bytes()
        t2 = time.perf_counter()
        decoded = decompress_bytes(data_back, model)
        t3 = time.perf_counter()
        if save_recon:
            Image.fromarray(decoded).save(out_dir / "reconstructions" / f"{path.stem}.png")
        size = bitstream.stat().st_size
        bpp = file_bpp(size, h, w)
        row = {
            "image": path.name,
            "height": h,
            "width": w,
            "bytes": size,
            "bpp": bpp,
            "estimated_bpp": estimated_bpp(model, image),
        } | score_image(image, decoded, lpips_model)
        if patch_fid is not None:
            patch_fid.update(image, decoded, fid_reference.original_features(path, image))
        rows.append(
            row
            | {
                "compression_ratio": path.stat().st_size / size,
                "compression_ratio_24bpp": 24.0 / bpp,
                "encoding_time": t1 - t0,
                "decoding_time": t3 - t2,
                "notes": "; ".join(notes),
            }
        )
    if not rows:
        raise VAEGANError("no image could be evaluated")
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in IMAGE_KEYS if k in rows[0]}
    if patch_fid is not None:
        summary.update(finish_patch_fid(patch_fid, fid_reference))
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return summary, rows


def finish_patch_fid(patch_fid: PatchFID, reference: ReferenceFeatures) -> dict:
    """FID/KID of a finished set (the reference features cached for next time); {} when not computable."""
    reference.save()
    try:
        return patch_fid.compute()
    except MetricError as exc:  # e.g. every image smaller than one patch
        tqdm.write(f"FID/KID not computed: {exc}")
        return {}


def compressai_json(name: str, description: str, points: list[dict]) -> dict:
    """CompressAI's results schema: ``results`` maps each metric to one value per rate point."""
    points = sorted(points, key=lambda p: p["bpp"])
    results = {k: [p[k] for p in points] for k in SUMMARY_KEYS if all(k in p for p in points)}
    return {"name": name, "description": description, "results": results}


def image_files(data_dir: str, dataset: str, limit: int | None) -> list[Path]:
    folder = Path(dataset) if Path(dataset).is_dir() else resolve_set(data_dir, dataset)
    files = list_images(folder)
    return files[:limit] if limit else files


def build_parser(family: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Evaluate {family} checkpoints with real compressed files.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model_path",
        "--model-path",
        dest="model_path",
        nargs="+",
        required=True,
        help="one checkpoint per rate point",
    )
    parser.add_argument(
        "--output_dir",
        "--output-dir",
        dest="output_dir",
        default=f"./eval_results/{family}",
        help="JSON, per-image CSVs, compressed files and reconstructions",
    )
    parser.add_argument(
        "--data_dir", "--data-dir", dest="data_dir", default="../data", help="root of --dataset"
    )
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--no_recon", "--no-recon", dest="no_recon", action="store_true", help="do not save reconstructions"
    )
    parser.add_argument("--name", default=None, help="name of the curve in the JSON")
    parser.add_argument(
        "--no_fid", "--no-fid", dest="no_fid", action="store_true", help="skip patch FID/KID (Inception)"
    )
    add_lpips_net_flag(parser)
    parser.add_argument(
        "--quality",
        type=float,
        nargs="+",
        default=None,
        help="qualities to evaluate a variable-rate checkpoint at (default: each whole quality of its range)",
    )
    parser.add_argument(
        "--cache_dir",
        "--cache-dir",
        dest="cache_dir",
        default=DEFAULT_FID_CACHE,
        help="where the originals' FID/KID features are cached per image set",
    )
    return parser


def add_lpips_net_flag(parser: argparse.ArgumentParser) -> None:
    """``--lpips_net``, the same in evaluate.py, compare_models.py and run_baselines.py."""
    parser.add_argument(
        "--lpips_net",
        "--lpips-net",
        dest="lpips_net",
        choices=("alex", "vgg"),
        default="alex",
        help="LPIPS backbone (alex is what papers report)",
    )


def perceptual_metrics(args, files: list[Path]) -> tuple[object | None, ReferenceFeatures | None]:
    """LPIPS model and FID reference, each None (with one line saying why) when it cannot be had."""
    try:
        lpips_model = load_lpips(args.device, net=args.lpips_net, on_missing="raise")
    except MetricError as exc:
        lpips_model = None
        print(f"LPIPS unavailable, no lpips column: {exc}")
    reference = None
    if not args.no_fid:
        try:
            reference = ReferenceFeatures(files, InceptionFeatures(args.device), args.cache_dir)
        except MetricError as exc:
            print(f"FID/KID unavailable, no fid/kid columns: {exc}")
    return lpips_model, reference


def summary_line(path: str, summary: dict) -> str:
    line = f"{path}: " + ", ".join(f"{k} {summary[k]:.4f}" for k in IMAGE_KEYS if k in summary)
    if "fid" in summary:
        # with fewer patches than a KID subset, every subset is the whole set: there is no spread to show
        spread = (
            f" +- {summary['kid_std']:.5f}" if summary.get("kid_std") else " (every subset is the whole set)"
        )
        line += (
            f"\n  FID {summary['fid']:.2f}, KID {summary['kid']:.5f}{spread} "
            f"on {summary['num_patches']} patches of 256 px per side (HiFiC protocol)"
        )
    return line


def checkpoint_points(args, models: list) -> list[tuple[str, object, str, str]]:
    """(checkpoint path, model view, name of the point's output folder, curve suffix) per rate point.

    A fixed-rate checkpoint is one point; a variable-rate one is a point per ``--quality`` given, or
    by default one per whole quality of its range. Each decode variant (a realism decoder's ends, or
    the ``--realism`` settings given, where the family's evaluate.py has that flag) has its own points."""
    points = []
    for path, model in zip(args.model_path, models):
        realism = getattr(args, "realism", None)
        try:
            if realism:
                variants = [(zoo.at_realism(model, w), f"-realism{w:g}") for w in realism]
            else:
                variants = model.decode_variants()
        except VAEGANError as exc:
            raise VAEGANError(f"{path}: {exc}") from None
        for variant, prefix in variants:
            qualities = args.quality
            if qualities and variant.quality_range() is not None:
                try:
                    views = [(zoo.at_quality(variant, q), f"-q{q:g}") for q in qualities]
                except VAEGANError as exc:
                    raise VAEGANError(f"{path}: {exc}") from None
            else:
                views = variant.rate_points()
            points += [(path, view, Path(path).stem + prefix + suffix, prefix) for view, suffix in views]
    return points


def evaluate_main(
    family: str, argv=None, parser: argparse.ArgumentParser | None = None, points_of=checkpoint_points
) -> tuple[dict, list]:
    """``points_of(args, models)`` lists the rate points, (path, view, name) or (path, view, name,
    curve suffix): a family can give several per checkpoint, and points of another decode variant
    (e.g. realism 1) form a curve of their own, ``<family><suffix>-<dataset>.json``."""
    parser = parser or build_parser(family)
    args = parser.parse_args(argv)
    models = [load_model(path, expect_family=family).to(args.device) for path in args.model_path]
    files = image_files(args.data_dir, args.dataset, args.limit)
    out = Path(args.output_dir)
    lpips_model, fid_reference = perceptual_metrics(args, files)
    curves: dict[str, list[dict]] = {}
    for path, model, name, *variant in points_of(args, models):
        summary, _ = evaluate_checkpoint(
            model,
            files,
            out / name,
            save_recon=not args.no_recon,
            lpips_model=lpips_model,
            fid_reference=fid_reference,
        )
        summary["checkpoint"] = str(path)
        summary["point"] = name
        curves.setdefault(variant[0] if variant else "", []).append(summary)
        print(summary_line(path, summary))
    dataset = Path(args.dataset).name
    results = []
    for suffix, points in curves.items():
        description = f"{family}{suffix} on {dataset} ({len(files)} images), real file sizes"
        if all("fid" in p for p in points):
            description += f"; FID/KID on {points[0]['num_patches']} patches of 256 px (HiFiC protocol)"
        result = compressai_json((args.name or family) + suffix, description, points)
        ordered = sorted(points, key=lambda p: p["bpp"])
        result["checkpoints"] = [p["checkpoint"] for p in ordered]
        result["points"] = [p["point"] for p in ordered]  # output folder of each point
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{family}{suffix}-{dataset}.json"
        target.write_text(json.dumps(result, indent=2))
        print(f"wrote {target}")
        results.append(result)
    result = results[0]
    return result, models
