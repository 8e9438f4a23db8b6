"""Evaluate VQ-VAE-GAN checkpoints on Kodak (default), CLIC, DIV2K or any folder, with real files.

    python evaluate.py --model_path ./output/vq_vae_gan/checkpoints/best_model.pth \
        --output_dir ./eval_results/vq_vae_gan --data_dir ../data [--stages 1 2]

``--stages 1 2`` decodes each checkpoint from its first 1, then 2 residual stages: one rate point
each in the CompressAI JSON. For every point it also reports what entropy coding the indices saves:
bits per index (from the stream bytes of the files) against log2(K) for fixed-length indices, and
the share of each stage's codebook that the decoded indices of the whole set use.
"""

import csv
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bitstream import unpack  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.evaluation import build_parser, evaluate_main  # noqa: E402

FAMILY = "vq_vae_gan"


def index_coding(model, bitstreams: Path) -> dict:
    """Bits per index over every file in ``bitstreams``, in total and per stage (header excluded),
    and codebook usage over the whole set: the share of codes that some decoded index uses."""
    bits, count, hits = None, 0, None
    for f in sorted(bitstreams.glob("*.vgan")):
        header, compressed = unpack(f.read_bytes())
        h, w = model.latent_size(header.size)
        stage_bits = [8 * len(s) for s in compressed.streams]
        bits = stage_bits if bits is None else [a + b for a, b in zip(bits, stage_bits)]
        count += h * w
        indices = model.decompress_indices(compressed).reshape(len(stage_bits), -1)
        used = torch.stack([torch.bincount(i, minlength=model.config.num_embeddings) for i in indices])
        hits = used if hits is None else hits + used
    if not count:
        raise VAEGANError(f"no compressed files in {bitstreams}")
    per_stage = [b / count for b in bits]
    fixed = math.log2(model.config.num_embeddings)
    bpi = sum(per_stage) / len(per_stage)
    p = hits.double() / hits.sum(1, keepdim=True)
    entropy = -(p * p.clamp_min(1e-300).log2()).sum(1)
    return {
        "codebook_usage_per_stage": (hits > 0).double().mean(1).tolist(),
        "index_entropy_per_stage": entropy.tolist(),  # bits: what an ideal marginal code would need
        "stages": len(per_stage),
        "bits_per_index": bpi,
        "bits_per_index_per_stage": per_stage,
        "fixed_length_bits_per_index": fixed,
        "index_saving": 1 - bpi / fixed,
    }


def main(argv=None) -> int:
    parser = build_parser(FAMILY)
    parser.add_argument(
        "--stages",
        type=int,
        nargs="+",
        default=None,
        help="decode with the first k residual stages, one rate point per k (default: all stages)",
    )
    runs = []

    def points_of(args, models):
        points = []
        for path, model in zip(args.model_path, models):
            bad = [k for k in args.stages or [] if not 1 <= k <= model.config.num_quantizers]
            if bad:
                raise VAEGANError(f"--stages {bad}: {path} has stages 1 to {model.config.num_quantizers}")
            for k in args.stages or [None]:
                view = model.with_stages(k or model.config.num_quantizers)
                name = Path(path).stem + (f"-stages{k}" if k else "")
                points.append((path, view, name))
                runs.append((args, path, view, name))
        return points

    result, _ = evaluate_main(FAMILY, argv, parser, points_of)
    args = runs[0][0]
    out = Path(args.output_dir)
    rows = []
    for _, path, view, name in runs:
        row = {"checkpoint": str(path)} | index_coding(view, out / name / "bitstreams")
        with open(out / name / "per_image.csv", newline="") as f:
            bpps = [float(r["bpp"]) for r in csv.DictReader(f)]
        row["bpp"] = sum(bpps) / len(bpps)
        rows.append(row)
        print(
            f"{path}, {row['stages']} stage(s): codebook usage "
            f"{', '.join(f'{u:.1%}' for u in row['codebook_usage_per_stage'])}; "
            f"{row['bits_per_index']:.3f} bits per index "
            f"(per stage: {', '.join(f'{b:.3f}' for b in row['bits_per_index_per_stage'])}) "
            f"vs {row['fixed_length_bits_per_index']:.3f} fixed-length: {row['index_saving']:.1%} saved"
        )
    rows.sort(key=lambda r: r["bpp"])  # the order of the CompressAI results
    result["results"]["bits_per_index"] = [r["bits_per_index"] for r in rows]
    result["results"]["index_saving"] = [r["index_saving"] for r in rows]
    result["results"]["codebook_usage"] = [min(r["codebook_usage_per_stage"]) for r in rows]
    result["stages"] = [r["stages"] for r in rows]
    result["index_coding"] = rows
    json_path = out / f"{FAMILY}-{Path(args.dataset).name}.json"
    json_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
