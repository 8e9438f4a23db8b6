"""Sweep classical codecs over an image set and write one CompressAI-schema JSON per codec.

    python scripts/run_baselines.py --data_dir ../shared/data --dataset kodak --codecs jpeg420 \
        --output_dir results/kodak
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.baselines import CODECS, sweep  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.evaluation import image_files  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--output_dir", default="results/kodak")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    files = image_files(args.data_dir, args.dataset, args.limit)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key in args.codecs:
        result = sweep(CODECS[key], files)
        (out / f"{key}.json").write_text(json.dumps(result, indent=2))
        print(f"wrote {out / f'{key}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
