"""Turn a training checkpoint into a release checkpoint: model only, float16 weights, with its recipe.

    python scripts/export_model.py output/beta_vae_gan/checkpoints/best_model.pth \
        beta_vae_gan/pretrained/beta_vae_gan-vr.pth --half
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.checkpoint import build_model, export_model, read_checkpoint
from common.cli import run_cli
from common.errors import VAEGANError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--half", action="store_true", help="store weights as float16 (halves the size)")
    parser.add_argument(
        "--ema", action="store_true", help="ship the weight average (training with --weight_average) instead"
    )
    args = parser.parse_args(argv)
    ckpt = read_checkpoint(args.checkpoint)
    model = build_model(ckpt["family"], ckpt["config"])
    model.load_state_dict(ckpt["model"])
    if args.ema:
        if "ema" not in ckpt:
            raise VAEGANError(f"{args.checkpoint} holds no weight average (train with --weight_average)")
        state = model.state_dict()
        state.update({k: v.to(state[k].dtype) for k, v in ckpt["ema"].items()})
        model.load_state_dict(state)
    recipe = {
        "train_config": ckpt.get("train_config", {}),
        "step": ckpt.get("step"),
        "weights": "ema" if args.ema else "last",
    }
    export_model(model.eval(), args.output, half=args.half, recipe=recipe)
    size = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB, model id {model.identity().hex()})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
