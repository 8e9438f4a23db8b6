"""Evaluate β-VAE-GAN checkpoints on Kodak (default), CLIC, DIV2K or any folder, with real files.

    python evaluate.py --model_path ./output/beta_vae_gan/checkpoints/best_model.pth \
        --output_dir ./eval_results/beta_vae_gan --data_dir ../data
    python evaluate.py --model_path ../beta_vae_gan/pretrained/beta_vae_gan-vr.pth --realism 0 1

A checkpoint with a realism decoder is evaluated at its default (faithful) decode and at realism 1,
unless ``--realism`` lists the settings; the files are the same at every realism.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.evaluation import build_parser, evaluate_main  # noqa: E402

FAMILY = "beta_vae_gan"


def main(argv=None) -> int:
    parser = build_parser(FAMILY)
    parser.add_argument(
        "--realism",
        type=float,
        nargs="+",
        default=None,
        help="realism settings (0 = faithful .. 1 = realistic) to decode a checkpoint with a realism "
        "decoder at (default: 0 and 1)",
    )
    evaluate_main(FAMILY, argv, parser)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
