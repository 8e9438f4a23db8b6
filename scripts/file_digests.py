"""sha256 of the files every shipped rate point writes for an image set: a refactor's byte-identity check.

    python scripts/file_digests.py --data_dir ../data --dataset kodak --output before.json
    (change the code)
    python scripts/file_digests.py --data_dir ../data --dataset kodak --output after.json --compare before.json

One digest per rate point (checkpoint file name + rate suffix, e.g. ``vq_vae_gan-k512x3-stages2``) over
the bytes of all its files in image order. ``--compare`` exits 1 if any point's files changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from common import zoo  # noqa: E402
from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.codec import compress_image  # noqa: E402
from common.datasets import load_image  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.evaluation import image_files  # noqa: E402
from common.files import atomic_write  # noqa: E402
from common.registry import FAMILIES  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default="../data")
    parser.add_argument("--dataset", default="kodak", help="kodak, clic, div2k, or a folder of images")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--output", type=Path, required=True, help="JSON: rate point -> sha256")
    parser.add_argument("--compare", type=Path, default=None, help="an earlier --output to compare with")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # encoding is deterministic anyway; one thread keeps it comparable
    images = [(f.name, load_image(f)[0]) for f in image_files(args.data_dir, args.dataset, args.limit)]
    digests = {}
    for family in FAMILIES:
        for path, _ in zoo.shipped(family):
            for view, suffix in load_model(path).rate_points():
                h = hashlib.sha256()
                for _, image in images:
                    h.update(compress_image(view, image))
                digests[path.stem + suffix] = h.hexdigest()
                print(f"{path.stem + suffix}: {digests[path.stem + suffix][:16]}", flush=True)
    atomic_write(args.output, json.dumps(digests, indent=1).encode(), make_parents=True)
    if args.compare is None:
        return 0
    try:
        before = json.loads(args.compare.read_text())
    except (OSError, ValueError) as exc:
        raise VAEGANError(f"cannot read {args.compare}: {exc}") from None
    changed = sorted(k for k in digests if k in before and before[k] != digests[k])
    only = sorted(set(digests) ^ set(before))
    print(
        f"{len(digests) - len(changed) - len(set(digests) - set(before))} rate points byte-identical", end=""
    )
    print(f"; changed: {', '.join(changed)}" if changed else "", end="")
    print(f"; in one file only: {', '.join(only)}" if only else "")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
