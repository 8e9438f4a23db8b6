"""Download the 500 BSDS500 images into <data_dir>/bsds500/{train,val,test}/, each checked by sha256.

The files come from github.com/Sisso16/ssn_pytorch at a fixed commit (folder BSR/BSDS500/data/images),
so the digests can never drift. BSDS500 is for non-commercial research and education only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from common.cli import run_cli
from common.download import Dataset, RemoteFile, add_cli_arguments, fetch
from common.download_manifest import BSDS500_SHA256, BSDS500_URL_PREFIX

SPLITS = ("train", "val", "test")


def bsds500_dataset(splits: list[str] | tuple[str, ...] = SPLITS) -> Dataset:
    """The images of the given splits (relative paths look like ``train/12003.jpg``)."""
    files = tuple(
        RemoteFile(BSDS500_URL_PREFIX + rel, digest, f"bsds500/{rel}")
        for rel, digest in BSDS500_SHA256.items()
        if rel.split("/")[0] in splits
    )
    return Dataset("bsds500", BSDS500_URL_PREFIX, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="which splits to fetch (default: all three)",
    )
    args = parser.parse_args(argv)
    paths = fetch(bsds500_dataset(args.splits), Path(args.data_dir), args.mirror)
    print(f"bsds500: {len(paths)} images verified in {Path(args.data_dir) / 'bsds500'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; run the same command again to resume"))
