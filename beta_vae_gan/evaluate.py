"""Evaluate β-VAE-GAN checkpoints on Kodak (default), CLIC, DIV2K or any folder, with real files.

    python evaluate.py --model_path ./output/beta_vae_gan/checkpoints/best_model.pth \
        --output_dir ./eval_results/beta_vae_gan --data_dir ../data
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.evaluation import evaluate_main  # noqa: E402


def main(argv=None) -> int:
    evaluate_main("beta_vae_gan", argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
