"""Train a hierarchical VAE-GAN: ``python main.py --output_dir ./output/hierarchical_vae_gan --data_dir ../data
--num_hierarchies 3 --beta 1.0 --lambda_adv 0.1``.

Every flag of :class:`common.train_config.TrainConfig` and :class:`HierarchicalVAEGANConfig` is available
(e.g. ``--level_betas 1,1,2``, finest level first); see ``--help``. The rate of each level is logged
as ``bpp_l<k>`` (l0 = 1/16). The loop itself lives in ``common/training.py``.

The finest level is the β latent, so a three-level model can start from a β checkpoint of the same
N, M and rate settings and without a spatial context:
``--init_from base.pth --N 64 --M 96 --rate_levels 8 --freeze_transforms`` trains the levels above y
alone; the shipped model's base is the β release of 2026-12-06 (``git show
47a0975:beta_vae_gan/pretrained/realism/beta_vae_gan-vr-realism.pth > base.pth``; the recipe is in
``pretrained/README.md``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.training import train  # noqa: E402
from hierarchical_vae_gan.model import HierarchicalVAEGAN  # noqa: E402


def main(argv=None) -> int:
    return train(
        HierarchicalVAEGAN,
        argv,
        "Train a hierarchical VAE-GAN (latents at several scales, self-attention, multi-scale PatchGAN).",
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
