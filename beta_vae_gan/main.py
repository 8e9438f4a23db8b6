"""Train a β-VAE-GAN: ``python main.py --output_dir ./output/beta_vae_gan --data_dir ../data --beta 1.0``.

Every flag of :class:`common.train_config.TrainConfig` and :class:`BetaVAEGANConfig` is available; see
``--help``. The loop itself lives in ``common/training.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beta_vae_gan.model import BetaVAEGAN  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.training import train  # noqa: E402


def main(argv=None) -> int:
    return train(BetaVAEGAN, argv, "Train a β-VAE-GAN (mean-scale hyperprior + conditional PatchGAN).")


if __name__ == "__main__":
    sys.exit(run_cli(main))
