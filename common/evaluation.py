"""Evaluate checkpoints on an image set with real files: every bpp is read from bytes on disk.

Per image: compress to ``bitstreams/NAME.vgan``, read the file back, decode it, and score the
decoded 8-bit image. Output: one CompressAI-schema JSON (one point per checkpoint, sorted by bpp),
a per-image CSV and the reconstructions for each checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common.checkpoint import load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import list_images, load_image, resolve_set, to_tensor
from common.errors import VAEGANError
from common.layers import pad_to_multiple
from common.metrics import MetricError, ms_ssim, psnr
from common.training import rate_bpp

SUMMARY_KEYS = (
    "bpp",
    "estimated_bpp",
    "psnr-rgb",
    "ms-ssim-rgb",
    "compression_ratio",
    "compression_ratio_24bpp",
    "encoding_time",
    "decoding_time",
)


@torch.no_grad()
def estimated_bpp(model, image: np.ndarray) -> float:
    """The model's own rate estimate for the quantized latents, per original pixel."""
    x = to_tensor(image).to(next(model.parameters()).device)
    out = model(pad_to_multiple(x, model.pad_multiple))
    return float(sum(rate_bpp(out.likelihoods, image.shape[0] * image.shape[1]).values()))


def evaluate_checkpoint(
    model, files: list[Path], out_dir: Path, save_recon: bool = True, progress: bool = True
) -> tuple[dict, list[dict]]:
    """Returns (averages, per-image rows). Images that cannot be read are reported and skipped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bitstreams").mkdir(exist_ok=True)
    if save_recon:
        (out_dir / "reconstructions").mkdir(exist_ok=True)
    compress_image(model, np.zeros((64, 64, 3), dtype=np.uint8))  # warm-up, not timed
    rows = []
    for path in tqdm(files, desc=Path(model.checkpoint_path or "model").stem, disable=not progress):
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
        bpp = 8 * size / (h * w)
        try:
            msssim = ms_ssim(image, decoded)
        except MetricError:
            msssim = float("nan")
        rows.append(
            {
                "image": path.name,
                "height": h,
                "width": w,
                "bytes": size,
                "bpp": bpp,
                "estimated_bpp": estimated_bpp(model, image),
                "psnr-rgb": psnr(image, decoded),
                "ms-ssim-rgb": msssim,
                "compression_ratio": path.stat().st_size / size,
                "compression_ratio_24bpp": 24.0 / bpp,
                "encoding_time": t1 - t0,
                "decoding_time": t3 - t2,
                "notes": "; ".join(notes),
            }
        )
    if not rows:
        raise VAEGANError("no image could be evaluated")
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in SUMMARY_KEYS}
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return summary, rows


def compressai_json(name: str, description: str, points: list[dict]) -> dict:
    """CompressAI's results schema: ``results`` maps each metric to one value per rate point."""
    points = sorted(points, key=lambda p: p["bpp"])
    results = {k: [p[k] for p in points] for k in SUMMARY_KEYS}
    return {"name": name, "description": description, "results": results}


def image_files(data_dir: str, dataset: str, limit: int | None) -> list[Path]:
    folder = Path(dataset) if Path(dataset).is_dir() else resolve_set(data_dir, dataset)
    files = list_images(folder)
    return files[:limit] if limit else files


def build_parser(family: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Evaluate {family} checkpoints with real compressed files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_path",
        "--model-path",
        dest="model_path",
        nargs="+",
        required=True,
        help="one checkpoint per rate point",
    )
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default=f"./eval_results/{family}")
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default="../data")
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no_recon", "--no-recon", dest="no_recon", action="store_true", help="do not save reconstructions"
    )
    parser.add_argument("--name", default=None, help="name of the curve in the JSON")
    return parser


def evaluate_main(family: str, argv=None, parser: argparse.ArgumentParser | None = None) -> tuple[dict, list]:
    parser = parser or build_parser(family)
    args = parser.parse_args(argv)
    models = [load_model(path, expect_family=family).to(args.device) for path in args.model_path]
    files = image_files(args.data_dir, args.dataset, args.limit)
    out = Path(args.output_dir)
    points = []
    for path, model in zip(args.model_path, models):
        summary, _ = evaluate_checkpoint(model, files, out / Path(path).stem, save_recon=not args.no_recon)
        summary["checkpoint"] = str(path)
        points.append(summary)
        print(f"{path}: " + ", ".join(f"{k} {summary[k]:.4f}" for k in SUMMARY_KEYS))
    dataset = Path(args.dataset).name
    result = compressai_json(
        args.name or family, f"{family} on {dataset} ({len(files)} images), real file sizes", points
    )
    result["checkpoints"] = [p["checkpoint"] for p in sorted(points, key=lambda p: p["bpp"])]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{family}-{dataset}.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / f'{family}-{dataset}.json'}")
    return result, models
