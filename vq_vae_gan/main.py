"""Train a VQ-VAE-GAN: ``python main.py --output_dir ./output/vq_vae_gan --data_dir ../data --num_embeddings 512``.

Every flag of :class:`common.train_config.TrainConfig` and :class:`VQVAEGANConfig` is available; see
``--help``. The loop itself lives in ``common/training.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.training import train  # noqa: E402
from vq_vae_gan.model import VQVAEGAN  # noqa: E402


def main(argv=None) -> int:
    return train(
        VQVAEGAN, argv, "Train a VQ-VAE-GAN (residual EMA codebooks, entropy-coded indices, PatchGAN)."
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
