"""Pinned URLs and sha256 digests of the evaluation sets, so every download is byte-for-byte known.

Per-file digests live beside this module in ``manifests/{kodak,clic,bsds500}.sha256`` (the format
``sha256sum -c`` reads), generated from shared/data/{kodak,clic,bsds500}/SHA256SUMS, the digests of
local copies of exactly the files at the pinned commits below (see shared/data/SOURCES.md).
Archive digests (DIV2K, CLIC 2020) are the ones tensorflow_datasets publishes in
tensorflow_datasets/url_checksums/{div2k,clic}.txt.
"""

from pathlib import Path

# github.com/Zelex/images at a fixed commit, folder kodak/.
KODAK_URL_PREFIX = (
    "https://raw.githubusercontent.com/Zelex/images/0b8a89db599a384124fb991b85d40cfd63c73d58/kodak/"
)
# github.com/Justin-Tan/high-fidelity-generative-compression at a fixed commit, assets/originals/.
CLIC_URL_PREFIX = (
    "https://raw.githubusercontent.com/Justin-Tan/high-fidelity-generative-compression/"
    "7d4e9e785932c039df7fb436159600ed8b474a83/assets/originals/"
)
# github.com/Sisso16/ssn_pytorch at a fixed commit, BSR/BSDS500/data/images/{train,val,test}/.
BSDS500_URL_PREFIX = (
    "https://raw.githubusercontent.com/Sisso16/ssn_pytorch/"
    "c4f9ac8c43397cbacbf2e2ba1505efafa769435d/BSR/BSDS500/data/images/"
)
# Official servers; (size in bytes, sha256) from tensorflow_datasets url_checksums.
DIV2K_URL_PREFIX = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DIV2K_ARCHIVES: dict[str, tuple[int, str]] = {
    "DIV2K_valid_HR.zip": (448993893, "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
    "DIV2K_train_HR.zip": (3530603713, "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
}
CLIC2020_URL_PREFIX = "https://data.vision.ee.ethz.ch/cvl/clic/"
CLIC2020_ARCHIVES: dict[str, tuple[int, str]] = {
    "professional_valid_2020.zip": (
        134834429,
        "00be38092ade2ab5163b65f7f6523d46c7bca147007f559adbb02c0afc236b7d",
    ),
}


def _read_manifest(name: str) -> dict[str, str]:
    """file name -> sha256 from ``manifests/<name>.sha256`` (``<digest>  <file>`` per line)."""
    table = {}
    for line in (Path(__file__).resolve().parent / "manifests" / f"{name}.sha256").read_text().splitlines():
        if line.strip():
            digest, file = line.split(maxsplit=1)
            table[file.lstrip("*")] = digest
    return table


KODAK_SHA256: dict[str, str] = _read_manifest("kodak")
CLIC_SHA256: dict[str, str] = _read_manifest("clic")
BSDS500_SHA256: dict[str, str] = _read_manifest("bsds500")
