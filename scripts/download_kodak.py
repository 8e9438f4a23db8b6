"""Download the 24 Kodak images into <data_dir>/kodak/, each checked against a pinned sha256.

The files come from github.com/Zelex/images at a fixed commit, so the digests can never drift.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from common.cli import run_cli
from common.download import Dataset, RemoteFile, add_cli_arguments, fetch
from common.download_manifest import KODAK_SHA256, KODAK_URL_PREFIX
from common.errors import DataError


def kodak_dataset(only: list[str] | None = None) -> Dataset:
    """The Kodak set, or the named subset of it (``kodim05``, ``kodim05.png`` and ``5`` all work)."""
    names = list(KODAK_SHA256)
    if only:
        wanted = []
        for item in only:
            name = f"kodim{int(item):02d}.png" if item.isdigit() else item
            name = name if name.endswith(".png") else name + ".png"
            if name not in KODAK_SHA256:
                raise DataError(f"unknown Kodak image {item!r} (choose from kodim01 to kodim24)")
            wanted.append(name)
        names = [n for n in names if n in wanted]
    files = tuple(RemoteFile(KODAK_URL_PREFIX + n, KODAK_SHA256[n], f"kodak/{n}") for n in names)
    return Dataset("kodak", KODAK_URL_PREFIX, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="fetch only these images, e.g. kodim01 kodim23"
    )
    args = parser.parse_args(argv)
    paths = fetch(kodak_dataset(args.only), Path(args.data_dir), args.mirror)
    print(f"kodak: {len(paths)} images verified in {Path(args.data_dir) / 'kodak'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; run the same command again to resume"))
