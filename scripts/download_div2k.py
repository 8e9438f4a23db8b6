"""Download DIV2K high-resolution images into <data_dir>/div2k/ from the official ETH Zurich server.

Default: the 100 validation images (DIV2K_valid_HR.zip, 449 MB) unpacked as div2k/DIV2K_valid_HR/0801.png
to 0900.png; ``--train`` adds the 800 training images (DIV2K_train_HR.zip, 3.5 GB) as
div2k/DIV2K_train_HR/. Archive sizes and sha256 digests are those tensorflow_datasets publishes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from common.cli import run_cli
from common.download import Dataset, RemoteFile, add_cli_arguments, fetch
from common.download_manifest import DIV2K_ARCHIVES, DIV2K_URL_PREFIX


def div2k_dataset(train: bool = False) -> Dataset:
    """The validation archive, plus the training archive when ``train``."""
    names = ["DIV2K_valid_HR.zip"] + (["DIV2K_train_HR.zip"] if train else [])
    files = []
    for name in names:
        size, digest = DIV2K_ARCHIVES[name]
        files.append(
            RemoteFile(DIV2K_URL_PREFIX + name, digest, f"div2k/{name}", size=size, extract_into="div2k")
        )
    return Dataset("div2k", DIV2K_URL_PREFIX, tuple(files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    parser.add_argument("--train", action="store_true", help="also fetch the 800 training images (3.5 GB)")
    parser.add_argument("--keep_archive", action="store_true", help="keep the zip files after unpacking")
    args = parser.parse_args(argv)
    fetch(div2k_dataset(args.train), Path(args.data_dir), args.mirror, keep_archives=args.keep_archive)
    print(f"div2k: verified and unpacked in {Path(args.data_dir) / 'div2k'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; run the same command again to resume"))
