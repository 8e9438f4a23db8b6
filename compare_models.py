"""Compare the VAE-GAN families with classical codecs on one image set.

    python compare_models.py --output_dir results/demo
    python compare_models.py --beta_model_path beta_vae_gan/pretrained --vq_model_path RUN/checkpoints \
        --data_dir ../data --dataset kodak --codecs jpeg420 webp hevc --output_dir comparison_results

Writes RD figures (PNG + SVG), bd_rate.md/.csv, side-by-side crops at --target_bpp, a self-contained
report.html and summary.json into --output_dir. With no model flag it uses every family's shipped
checkpoints; with no Kodak under --data_dir it uses scikit-image's sample photos. The work is in
common/report.py; see --help for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common.cli import run_cli  # noqa: E402
from common.report import compare_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(compare_main))
