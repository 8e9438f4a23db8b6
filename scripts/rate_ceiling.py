"""How far can a β model's transforms go at any rate? PSNR of g_s(g_a(x)) with the latent unrounded.

    python scripts/rate_ceiling.py --model_path beta_vae_gan/pretrained/beta_vae_gan-vr.pth \
        --data_dir ../data --dataset kodak --output results/kodak/variable_rate/rate_ceiling.json

A curve that flattens while its bits keep growing is either a weak entropy model or transforms that
cannot do better: this tells which. At each quality it decodes the scaled latent twice, unrounded
(the transforms' ceiling at that quality: no quantization error at all) and rounded (what the file's
quantization leaves, without the prior's mean offset); where the two meet, more bits buy nothing and
only wider transforms (or more training) raise the curve. Mean PSNR over the images, RGB, 8 bits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.datasets import load_image, to_tensor  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.evaluation import image_files  # noqa: E402
from common.files import atomic_write  # noqa: E402
from common.layers import pad_to_multiple  # noqa: E402
from common.metrics import psnr  # noqa: E402


def ceiling(model, x: torch.Tensor, qualities: list[float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(unrounded, rounded) reconstructions of x (1, 3, H, W) in [0, 1] at each quality; the latent
    is computed once, since only the gains depend on the quality."""
    h, w = x.shape[-2:]
    out = []
    with torch.no_grad():
        y = model.g_a(pad_to_multiple(x, model.pad_multiple) * 2 - 1)
        for quality in qualities:
            (g, ig, _, _), _ = model._gains(torch.tensor([float(quality)]))
            out.append(
                tuple(
                    model._synthesize(y_g * ig, None)[..., :h, :w].clamp(0, 1)
                    for y_g in (y * g, (y * g).round())
                )
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_path", "--model-path", dest="model_path", required=True)
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default="../data")
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--quality", type=float, nargs="+", default=None, help="default: every anchor")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--output", type=Path, default=None, help="JSON of the means and every image's")
    args = parser.parse_args(argv)

    model = load_model(args.model_path)  # float32, in eval mode
    if model.family != "beta_vae_gan":
        raise VAEGANError(
            f"{args.model_path} is a {model.family} model: this check reads a β-VAE-GAN's transforms"
        )
    if model.quality_range() is None:
        raise VAEGANError(
            f"{args.model_path} has one rate: this check compares a variable-rate β's qualities"
        )
    lo, hi = model.quality_range()
    qualities = args.quality or [float(q) for q in range(int(lo), int(hi) + 1)]
    for q in qualities:
        if not lo <= q <= hi:
            raise VAEGANError(f"--quality {q:g} is outside the model's range {lo:g}-{hi:g}")
    files = image_files(args.data_dir, args.dataset, args.limit)
    rows = []
    for f in files:
        x = to_tensor(load_image(f)[0])
        for q, (unrounded, rounded) in zip(qualities, ceiling(model, x, qualities)):
            rows.append(
                {
                    "image": f.name,
                    "quality": q,
                    "psnr_unrounded": psnr(unrounded, x),
                    "psnr_rounded": psnr(rounded, x),
                }
            )
    means = []
    print("quality  PSNR unrounded  PSNR rounded  (dB, mean of images)")
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        m = {k: float(np.mean([r[k] for r in sel])) for k in ("psnr_unrounded", "psnr_rounded")}
        means.append({"quality": q} | m)
        print(f"{q:7g}  {m['psnr_unrounded']:14.2f}  {m['psnr_rounded']:12.2f}")
    if args.output:
        record = {
            "command": " ".join(
                ["python scripts/rate_ceiling.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "model": str(args.model_path),
            "model_id": model.identity().hex(),
            "images": len(files),
            "means": means,
            "per_image": rows,
        }
        atomic_write(args.output, json.dumps(record, indent=1).encode())
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
