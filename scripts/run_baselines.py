"""Sweep classical codecs over an image set and write one CompressAI-schema JSON per codec.

    TORCH_HOME=/tmp/torchhome python scripts/run_baselines.py --data_dir ../shared/data --dataset kodak \
        --codecs jpeg420 webp jpeg2000 avif jpegxl hevc --output_dir results/kodak \
        --cache_dir runs/baseline_cache

Sweeps are cached per codec in ``--cache_dir`` (keyed on codec, library versions, qualities, the
files and the metrics asked for), so a second run only copies the results. ``--codec_results
results/kodak`` reuses the committed sweeps, and measures only the metrics they lack.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.baselines import CODECS, sweep_cached  # noqa: E402
from common.cli import HelpFormatter, run_cli  # noqa: E402
from common.evaluation import (  # noqa: E402
    DEFAULT_FID_CACHE,
    add_lpips_net_flag,
    image_files,
    perceptual_metrics,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default="data")
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default="results/kodak")
    parser.add_argument(
        "--cache_dir", "--cache-dir", dest="cache_dir", default="runs/baseline_cache", help="sweep cache"
    )
    parser.add_argument(
        "--fid_cache_dir",
        "--fid-cache-dir",
        dest="fid_cache_dir",
        default=DEFAULT_FID_CACHE,
        help="where the originals' FID/KID features are cached per image set",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument(
        "--no_fid", "--no-fid", dest="no_fid", action="store_true", help="skip patch FID/KID (Inception)"
    )
    add_lpips_net_flag(parser)
    parser.add_argument("--device", default="cpu", help="for LPIPS and Inception")
    parser.add_argument(
        "--codec_results",
        "--codec-results",
        dest="codec_results",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of published <codec>.json sweeps: reused when their key matches, completed "
        "with the metrics they lack (e.g. LPIPS) instead of being swept again",
    )
    args = parser.parse_args(argv)
    files = image_files(args.data_dir, args.dataset, args.limit)
    lpips_model, fid_reference = perceptual_metrics(
        argparse.Namespace(**{**vars(args), "cache_dir": args.fid_cache_dir}), files
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key in args.codecs:
        result = sweep_cached(
            key,
            files,
            Path(args.cache_dir),
            lpips_model=lpips_model,
            fid_reference=fid_reference,
            published=args.codec_results,
        )
        (out / f"{key}.json").write_text(json.dumps(result, indent=2) + "\n")
        r = result["results"]
        print(
            f"wrote {out / f'{key}.json'}: {len(r['bpp'])} points, {min(r['bpp']):.3f}-{max(r['bpp']):.3f} bpp"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
