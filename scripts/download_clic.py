"""Download CLIC 2020 images into <data_dir>/clic/, each checked against a pinned sha256.

Default: the three CLIC 2020 images kept (at a fixed commit) in
github.com/Justin-Tan/high-fidelity-generative-compression, assets/originals/ — the set this project
reports on. ``--full`` instead fetches the official CLIC 2020 professional validation archive
(134.8 MB, sha256 as published by tensorflow_datasets) and unpacks it into <data_dir>/clic2020_valid/,
kept apart so that "clic" always means the same three images.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from common.cli import run_cli
from common.download import Dataset, RemoteFile, add_cli_arguments, fetch
from common.download_manifest import (
    CLIC2020_ARCHIVES,
    CLIC2020_URL_PREFIX,
    CLIC_SHA256,
    CLIC_URL_PREFIX,
)

FULL_ARCHIVE = "professional_valid_2020.zip"
FULL_FOLDER = "clic2020_valid"


def clic_dataset(full: bool = False) -> Dataset:
    """The three pinned images, or (``full``) the official professional validation archive."""
    if full:
        size, digest = CLIC2020_ARCHIVES[FULL_ARCHIVE]
        archive = RemoteFile(
            CLIC2020_URL_PREFIX + FULL_ARCHIVE,
            digest,
            f"{FULL_FOLDER}/{FULL_ARCHIVE}",
            size=size,
            extract_into=FULL_FOLDER,
        )
        return Dataset("clic2020_valid", CLIC2020_URL_PREFIX, (archive,))
    files = tuple(RemoteFile(CLIC_URL_PREFIX + n, d, f"clic/{n}") for n, d in CLIC_SHA256.items())
    return Dataset("clic", CLIC_URL_PREFIX, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"fetch the official CLIC 2020 professional validation set into {FULL_FOLDER}/",
    )
    parser.add_argument(
        "--keep_archive", action="store_true", help="with --full: keep the zip after unpacking"
    )
    args = parser.parse_args(argv)
    folder = Path(args.data_dir) / (FULL_FOLDER if args.full else "clic")
    paths = fetch(clic_dataset(args.full), Path(args.data_dir), args.mirror, keep_archives=args.keep_archive)
    if args.full:
        print(f"clic: official validation set unpacked in {folder} (use --dataset {FULL_FOLDER})")
    else:
        print(f"clic: {len(paths)} images verified in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; run the same command again to resume"))
