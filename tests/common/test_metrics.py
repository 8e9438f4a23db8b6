"""Tests for common.metrics: each checks a metric against an independent computation or closed form."""

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg, signal

from common import metrics as M
from common.errors import VAEGANError
from tests.conftest import no_lpips_source

SHARED_DATA = Path(
    os.environ.get("VAEGAN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
FID_WEIGHTS = SHARED_DATA / "weights" / "fid" / M.FID_WEIGHTS_FILE


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Bilinearly upsampled noise: image-like statistics, cheap to make."""
    base = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))


def point_hub_at(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> None:
    """Point TORCH_HOME and torch.hub at torch_home; monkeypatch restores both afterwards."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    # Registers the current (possibly unset) hub dir for restoration before set_dir changes it.
    monkeypatch.setattr(torch.hub, "_hub_dir", getattr(torch.hub, "_hub_dir", None), raising=False)
    torch.hub.set_dir(str(torch_home / "hub"))


# ---------------------------------------------------------------- PSNR / SSIM / MS-SSIM


def test_psnr_of_known_mse():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[..., 0] += 6  # MSE = 36 / 3 = 12 over all channels
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 12), abs=1e-12)
    assert M.psnr(a, a) == float("inf")


def test_psnr_rounds_floats_to_8_bits_and_averages_per_image():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1 -> 48.13 dB
    b[1] += 2  # MSE 4 -> 42.11 dB
    expected = (10 * math.log10(255**2) + 10 * math.log10(255**2 / 4)) / 2
    assert M.psnr(a, b) == pytest.approx(expected)
    # Floats within half a level of k/255 are the same 8-bit image as k.
    ta = torch.from_numpy(a.copy()).permute(0, 3, 1, 2).float() / 255 + 0.4 / 255
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255 - 0.4 / 255
    assert M.psnr(ta, tb) == pytest.approx(expected)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out: 11x11 Gaussian (sigma 1.5), 'valid' windows, per-channel mean."""
    g = np.exp(-0.5 * (np.arange(11) - 5) ** 2 / 1.5**2)
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    out = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)

        def f(z):
            return signal.convolve2d(z, win, mode="valid")

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_ssim_identical_and_against_reference():
    rng = np.random.default_rng(0)
    a = smooth_image(rng, 48, 64)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert M.ssim(a, a) == pytest.approx(1.0)
    value = M.ssim(a, b)
    assert 0.2 < value < 0.99
    assert value == pytest.approx(reference_ssim(a, b), abs=1e-9)


def test_ms_ssim_identical_noisy_and_too_small():
    rng = np.random.default_rng(1)
    a = smooth_image(rng, 176, 192)
    b = np.clip(a.astype(int) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < M.ms_ssim(a, b) < 0.999
    small = a[:160]
    with pytest.raises(M.MetricError, match=r"161 px.*160x192") as err:
        M.ms_ssim(small, small)
    assert isinstance(err.value, VAEGANError)


def test_shape_mismatch_is_a_metric_error():
    with pytest.raises(M.MetricError, match="differ in shape"):
        M.psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


def test_bpp_and_ratio():
    assert M.file_bpp(1000, 100, 80) == pytest.approx(1.0)
    assert M.compression_ratio(1_179_648, 12_288) == pytest.approx(96.0)
    with pytest.raises(M.MetricError):
        M.compression_ratio(10, 0)


# ---------------------------------------------------------------- LPIPS


def test_lpips_plumbing_with_random_trunk(capsys):
    model = M.load_lpips(pnet_rand=True)
    assert model is not None and not model.training
    assert "Setting up" not in capsys.readouterr().out
    rng = np.random.default_rng(2)
    a = smooth_image(rng, 64, 64)
    b = np.clip(a.astype(int) + 40, 0, 255).astype(np.uint8)
    assert M.lpips_distance(model, a, a) == pytest.approx(0.0, abs=1e-7)
    assert M.lpips_distance(model, a, b) > 1e-4
    # Float input in [0, 1] is the same image as its uint8 version.
    ta = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255
    tb = torch.from_numpy(b.copy()).permute(2, 0, 1)[None].float() / 255
    assert M.lpips_distance(model, ta, tb) == pytest.approx(M.lpips_distance(model, a, b), rel=1e-5)


def test_load_lpips_without_backbone_weights(tmp_path, monkeypatch):
    no_lpips_source(monkeypatch)
    point_hub_at(monkeypatch, tmp_path)
    monkeypatch.setattr(M, "_warned", set())
    assert M.load_lpips(on_missing="none") is None
    with pytest.raises(M.MetricError) as err:
        M.load_lpips(on_missing="raise")
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert "scripts/download_lpips_weights.py" in msg and "VAEGAN_LPIPS_FETCH=0" in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert M.load_lpips(on_missing="warn") is None
        assert M.load_lpips(on_missing="warn") is None
    assert len([w for w in caught if "alexnet-owt" in str(w.message)]) == 1
    assert not (tmp_path / "hub" / "checkpoints").exists()  # nothing was downloaded


# ---------------------------------------------------------------- Fréchet distance, KID, patches


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert M.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == (
        pytest.approx(4.0 + 1.0)
    )
    # Diagonal: sum of per-dimension terms.
    v1, v2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.1, 0.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert M.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_sqrtm_and_exact_low_rank():
    rng = np.random.default_rng(3)
    # Full rank: the textbook formula with scipy's sqrtm (what pytorch-fid uses).
    a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    # Rank-deficient (10 samples, 300 dims): Tr sqrt(S1 S2) = nuclear norm of C1 C2^T / (n - 1).
    f1 = rng.standard_normal((10, 300)) + 1
    f2 = f1 + 0.3 * rng.standard_normal((10, 300))
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    exact = (
        np.sum((f1.mean(0) - f2.mean(0)) ** 2)
        + (np.sum(c1**2) + np.sum(c2**2) - 2 * np.linalg.svd(c1 @ c2.T, compute_uv=False).sum()) / 9
    )
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f1, f2)]
    assert M.frechet_distance(*stats[0], *stats[1]) == pytest.approx(exact, rel=1e-9)  # D x D route
    assert M.fid_from_features(f1, f2) == pytest.approx(exact, rel=1e-9)  # sample-space route
    assert abs(M.fid_from_features(f1, f1)) < 1e-9
    # More samples than dimensions: fid_from_features takes the covariance route, same answer.
    g1, g2 = rng.standard_normal((40, 8)), rng.standard_normal((30, 8)) * 1.5 + 0.2
    cov_route = M.frechet_distance(g1.mean(0), np.cov(g1, rowvar=False), g2.mean(0), np.cov(g2, rowvar=False))
    assert M.fid_from_features(g1, g2) == pytest.approx(cov_route, rel=1e-12)
    assert M.fid_from_features(g1[:8], g2[:7]) == pytest.approx(
        M.frechet_distance(
            g1[:8].mean(0), np.cov(g1[:8], rowvar=False), g2[:7].mean(0), np.cov(g2[:7], rowvar=False)
        ),
        rel=1e-9,
    )


def naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, one pair at a time."""
    d, m = x.shape[1], len(x)

    def k(u, v):
        return (u @ v / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_formula_and_behaviour():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.5
    # subset_size >= n uses every row; MMD^2 does not depend on their order, so std is 0.
    kid, std = M.kid_from_features(x, y, subsets=3, subset_size=50)
    assert kid == pytest.approx(naive_mmd2(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)

    same_a, same_b = rng.standard_normal((600, 64)), rng.standard_normal((600, 64))
    shifted = rng.standard_normal((600, 64)) + 0.5
    kid_same, std_same = M.kid_from_features(same_a, same_b, subsets=20, subset_size=300)
    kid_shift, _ = M.kid_from_features(same_a, shifted, subsets=20, subset_size=300)
    assert abs(kid_same) < 0.01
    assert kid_shift > 0.1 and kid_shift > 20 * max(abs(kid_same), std_same)
    # Fixed seed: the same call gives the same numbers.
    assert M.kid_from_features(same_a, shifted, subsets=5, subset_size=50) == M.kid_from_features(
        same_a, shifted, subsets=5, subset_size=50
    )


@pytest.mark.parametrize("shape", [(512, 768, 3), (768, 512, 3)])
def test_patch_counts_kodak_sizes(shape):
    img = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    patches = M.extract_patches(img)
    # 2x3 grid = 6, plus the grid shifted by 128: (512-128)//256 * (768-128)//256 = 1 * 2 = 2.
    assert patches.shape == (8, 256, 256, 3)
    np.testing.assert_array_equal(patches[0], img[:256, :256])
    np.testing.assert_array_equal(patches[6], img[128:384, 128:384])


def test_patch_counts_edge_sizes():
    assert len(M.extract_patches(np.zeros((383, 383, 3), np.uint8))) == 1  # no room for a shift
    assert len(M.extract_patches(np.zeros((384, 384, 3), np.uint8))) == 2
    assert M.extract_patches(np.zeros((255, 999, 3), np.uint8)).shape == (0, 256, 256, 3)
    assert len(M.extract_patches(np.zeros((1024, 1024, 3), np.uint8))) == 16 + 9


def test_kid_and_fid_need_two_samples():
    with pytest.raises(M.MetricError, match="N >= 2"):
        M.fid_from_features(np.zeros((1, 4)), np.zeros((3, 4)))


# ---------------------------------------------------------------- FID / KID with Inception


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    """InceptionFeatures loaded from a hub folder holding only a link to the shared weights."""
    if not FID_WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {FID_WEIGHTS} (see shared/data/SOURCES.md)")
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / M.FID_WEIGHTS_FILE).symlink_to(FID_WEIGHTS)
    with pytest.MonkeyPatch.context() as mp:
        point_hub_at(mp, home)
        yield M.InceptionFeatures("cpu")


def test_inception_weights_missing_is_a_metric_error(tmp_path, monkeypatch):
    point_hub_at(monkeypatch, tmp_path)
    monkeypatch.setattr(M, "FID_SHARED_COPY", str(tmp_path / "no_copy.pth"))
    with pytest.raises(M.MetricError, match=M.FID_WEIGHTS_FILE):
        M.InceptionFeatures("cpu")


def test_a_local_inception_copy_is_used_not_only_named(tmp_path, monkeypatch, capsys):
    """The copy beside the repository (shared/data/weights/fid) is linked into the hub folder once."""
    point_hub_at(monkeypatch, tmp_path / "home")
    copy = tmp_path / "copy.pth"
    copy.write_bytes(b"weights")
    monkeypatch.setattr(M, "FID_SHARED_COPY", str(copy))
    M._require_inception_weights(allow_download=False)
    linked = tmp_path / "home" / "hub" / "checkpoints" / M.FID_WEIGHTS_FILE
    assert linked.is_symlink() and linked.read_bytes() == b"weights"
    assert "using the Inception weights at" in capsys.readouterr().err
    M._require_inception_weights(allow_download=False)  # now simply there
    assert capsys.readouterr().err == ""


def kodak(name: str) -> np.ndarray:
    path = SHARED_DATA / "kodak" / name
    if not path.is_file():
        pytest.skip(f"Kodak image not found at {path}")
    return np.asarray(Image.open(path).convert("RGB"))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_patch_fid_of_identical_images_is_zero(inception):
    img = kodak("kodim23.png")[:256]  # 256 x 768: three patches, no shifted row (keeps CPU time low)
    pf = M.PatchFID(features=inception, kid_subsets=10)
    assert pf.update(img, img) == 3
    out = pf.compute()
    assert out["num_patches"] == 3
    assert abs(out["fid"]) < 1e-6
    assert abs(out["kid"]) < 0.1  # unbiased estimate on identical sets: slightly negative, not exactly 0
    feats = np.concatenate(pf._real)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64


@pytest.mark.slow
def test_fid_and_kid_grow_as_jpeg_quality_falls(inception):
    originals = [kodak("kodim01.png"), kodak("kodim04.png")]  # one landscape, one portrait
    patches = {
        q: np.concatenate([M.extract_patches(jpeg(o, q) if q else o) for o in originals])
        for q in (None, 90, 10)
    }
    feats = {q: inception(p) for q, p in patches.items()}
    assert len(feats[None]) == 16
    fid90, fid10 = (M.fid_from_features(feats[None], feats[q]) for q in (90, 10))
    kid90, kid10 = (M.kid_from_features(feats[None], feats[q], subsets=20)[0] for q in (90, 10))
    assert 0 < fid90 < fid10
    assert fid10 > 2 * fid90
    assert kid90 < kid10 and kid10 > 0
