"""Evaluation with perceptual metrics: FID/KID in the JSON, the reference cache, missing LPIPS weights;
and the perceptual training loss falling back to discriminator feature matching."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common import evaluation as E
from common import metrics as M
from common.checkpoint import read_checkpoint
from common.errors import VAEGANError
from common.losses import feature_matching_loss
from common.training import Trainer
from tests.conftest import TINY_BETA, make_image_splits, no_lpips_source, random_image, tiny_train_config

SHARED_DATA = Path(
    os.environ.get("VAEGAN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
FID_WEIGHTS = SHARED_DATA / "weights" / "fid" / M.FID_WEIGHTS_FILE


def point_hub_at(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> None:
    """Point TORCH_HOME and torch.hub at torch_home; monkeypatch restores both afterwards."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "_hub_dir", getattr(torch.hub, "_hub_dir", None), raising=False)
    torch.hub.set_dir(str(torch_home / "hub"))


@pytest.fixture()
def hub_with_inception_only(tmp_path, monkeypatch) -> Path:
    """A hub folder holding a link to the shared FID Inception weights and no LPIPS backbone."""
    if not FID_WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {FID_WEIGHTS} (see shared/data/SOURCES.md)")
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / M.FID_WEIGHTS_FILE).symlink_to(FID_WEIGHTS)
    point_hub_at(monkeypatch, home)
    return home


def evaluate(tiny_beta_path, shared_data, out: Path, cache: Path, *extra: str) -> dict:
    argv = ["--model_path", str(tiny_beta_path), "--output_dir", str(out), "--data_dir", str(shared_data)]
    argv += ["--limit", "2", "--no_recon", "--cache_dir", str(cache), *extra]
    E.evaluate_main("beta_vae_gan", argv)
    return json.loads((out / "beta_vae_gan-kodak.json").read_text())


def test_fid_kid_in_json_and_reference_cache_reused(
    tiny_beta_path, shared_data, hub_with_inception_only, tmp_path, monkeypatch, capsys
):
    calls = []
    real_call = M.InceptionFeatures.__call__

    def counting_call(self, images):
        calls.append(len(images))
        return real_call(self, images)

    monkeypatch.setattr(M.InceptionFeatures, "__call__", counting_call)
    cache = tmp_path / "cache"

    first = evaluate(tiny_beta_path, shared_data, tmp_path / "a", cache)
    out = capsys.readouterr().out
    results = first["results"]
    # Two 768x512 Kodak images: 6 + 2 shifted patches each.
    assert results["num_patches"] == [16]
    assert results["fid"][0] > 1.0 and results["kid"][0] > 0.0  # a random tiny model is far from Kodak
    assert results["kid_std"][0] == pytest.approx(0.0, abs=1e-9)  # 16 < 1000: each subset is the whole set
    assert 0.0 < results["ssim-rgb"][0] < 1.0 and "psnr-rgb" in results and "ms-ssim-rgb" in results
    assert "16 patches" in first["description"] and "16 patches" in out
    # Originals and reconstructions each went through the network once per image.
    assert sorted(calls) == [8, 8, 8, 8]
    cached = list(cache.glob("kodak-p256-*.npz"))
    assert len(cached) == 1 and "cached in" in out
    with np.load(cached[0]) as data:
        assert data["features"].shape == (16, 2048) and list(data["counts"]) == [8, 8]

    # Second run, same set: the originals' features come from the cache; only reconstructions are run.
    calls.clear()
    second = evaluate(tiny_beta_path, shared_data, tmp_path / "b", cache)
    out = capsys.readouterr().out
    assert calls == [8, 8]
    assert f"read from {cached[0]}" in out
    assert second["results"]["fid"][0] == pytest.approx(results["fid"][0], rel=1e-9)
    assert second["results"]["kid"][0] == pytest.approx(results["kid"][0], rel=1e-9)

    # A changed file list (a third image) is another key: a new cache file, nothing stale reused.
    ref = E.ReferenceFeatures(
        E.image_files(str(shared_data), "kodak", 3), M.InceptionFeatures("cpu"), cache_dir=cache
    )
    assert not ref.loaded and ref.path != cached[0]


def test_reference_cache_key_and_damaged_file(tmp_path, capsys):
    """Without Inception: a stand-in feature function, to check what the cache key covers."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        files.append(tmp_path / "set" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(random_image(rng, 300, 300)).save(files[-1])  # one 256 px patch each
    images = {f: np.asarray(Image.open(f)) for f in files}
    calls = []

    def fake_features(patches):
        calls.append(len(patches))
        return patches.reshape(len(patches), -1, 3).mean(1).astype(np.float64)

    def run():
        ref = E.ReferenceFeatures(files, fake_features, cache_dir=tmp_path / "cache")
        feats = [ref.original_features(f, images[f]) for f in files]
        ref.save()
        return ref, feats

    first, feats = run()
    assert calls == [1, 1] and not first.loaded
    again, cached = run()
    assert calls == [1, 1] and again.loaded and again.path == first.path
    for a, b in zip(feats, cached):
        np.testing.assert_array_equal(a.astype(np.float32), b)  # stored as float32
    os.utime(files[1], ns=(0, 0))  # same bytes, another mtime (a copied or re-downloaded set): reused
    same, _ = run()
    assert same.loaded and same.path == first.path and calls == [1, 1]
    Image.fromarray(random_image(rng, 300, 300)).save(files[1])  # other bytes: another key, recomputed
    images[files[1]] = np.asarray(Image.open(files[1]))
    touched, _ = run()
    assert touched.path != first.path and not touched.loaded and calls == [1, 1, 1, 1]
    for damage in (b"not an npz", touched.path.read_bytes()[:100]):  # garbage, then a truncated zip
        touched.path.write_bytes(damage)
        capsys.readouterr()
        damaged, _ = run()
        assert not damaged.loaded and "unreadable" in capsys.readouterr().out
    assert len(calls) == 8


def test_missing_lpips_and_inception_weights_leave_columns_out(
    tiny_beta_path, shared_data, tmp_path, monkeypatch, capsys
):
    no_lpips_source(monkeypatch)
    monkeypatch.setattr(M, "FID_SHARED_COPY", str(tmp_path / "no_copy.pth"))
    point_hub_at(monkeypatch, tmp_path / "empty_home")
    result = evaluate(tiny_beta_path, shared_data, tmp_path / "out", tmp_path / "cache")
    out = capsys.readouterr().out
    keys = result["results"]
    assert "lpips" not in keys and "fid" not in keys and "kid" not in keys
    assert len(keys["ssim-rgb"]) == 1
    folder = str(tmp_path / "empty_home" / "hub" / "checkpoints")
    lpips_lines = [line for line in out.splitlines() if line.startswith("LPIPS unavailable")]
    assert len(lpips_lines) == 1
    assert "alexnet-owt-7be5be79.pth" in lpips_lines[0] and folder in lpips_lines[0]
    fid_lines = [line for line in out.splitlines() if line.startswith("FID/KID unavailable")]
    assert len(fid_lines) == 1 and M.FID_WEIGHTS_FILE in fid_lines[0] and folder in fid_lines[0]
    header = (tmp_path / "out" / "tiny_beta" / "per_image.csv").read_text().splitlines()[0]
    assert "ssim-rgb" in header and "lpips" not in header
    assert not (tmp_path / "cache").exists()


def test_lpips_column_when_a_model_is_given(tiny_beta_path, shared_data, tmp_path):
    """Plumbing only: a random-trunk LPIPS (offline) fills the per-image and summary column."""
    from common.checkpoint import load_model
    from common.datasets import list_images

    model = load_model(tiny_beta_path)
    files = list_images(shared_data / "kodak")[:1]
    summary, rows = E.evaluate_checkpoint(
        model, files, tmp_path, save_recon=False, progress=False, lpips_model=M.load_lpips(pnet_rand=True)
    )
    assert rows[0]["lpips"] > 0 and summary["lpips"] == pytest.approx(rows[0]["lpips"])
    assert "fid" not in summary


# ---------------------------------------------------------------- perceptual training loss


@pytest.fixture()
def data_dir(tmp_path):
    return make_image_splits(tmp_path / "data", {"train": 2, "val": 1}, (64, 64))


def _cfg(data_dir, out, **kw):
    base = dict(
        warmup_steps=1, val_images=1, lambda_adv=0.1, disc_start=0, lambda_perceptual=1.0, max_steps=2, seed=0
    )
    return tiny_train_config(data_dir, out, **(base | kw))


def test_feature_matching_fallback_without_lpips_weights(data_dir, tmp_path, monkeypatch, capsys):
    no_lpips_source(monkeypatch)
    point_hub_at(monkeypatch, tmp_path / "empty_home")
    torch.manual_seed(0)
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), _cfg(data_dir, tmp_path / "out"))
    out = capsys.readouterr().out
    assert trainer.perceptual_backend == "disc-feature-matching" and trainer.perceptual is None
    assert out.count("LPIPS unavailable") == 1 and "alexnet-owt-7be5be79.pth" in out
    logs = trainer.fit()
    assert trainer.step == 2
    assert np.isfinite(logs["perceptual"]) and logs["perceptual"] > 0
    assert "LPIPS unavailable" not in capsys.readouterr().out  # said once, at start-up only
    ckpt = read_checkpoint(tmp_path / "out" / "checkpoints" / "latest.pth")
    assert ckpt["train_config"]["perceptual_backend"] == "disc-feature-matching"
    assert ckpt["train_config"]["perceptual"] == "auto"


def test_explicit_lpips_without_weights_and_feature_matching_without_disc_are_errors(
    data_dir, tmp_path, monkeypatch
):
    no_lpips_source(monkeypatch)
    point_hub_at(monkeypatch, tmp_path / "empty_home")
    with pytest.raises(M.MetricError, match="alexnet-owt-7be5be79.pth"):
        Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), _cfg(data_dir, tmp_path, perceptual="lpips"))
    with pytest.raises(VAEGANError, match="lambda_adv"):
        Trainer(
            BetaVAEGAN,
            BetaVAEGANConfig(**TINY_BETA),
            _cfg(data_dir, tmp_path, perceptual="feature_matching", lambda_adv=0.0),
        )
    trainer = Trainer(
        BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), _cfg(data_dir, tmp_path, lambda_perceptual=0)
    )
    assert trainer.perceptual_backend == "none"


def test_feature_matching_loss_and_discriminator_features():
    torch.manual_seed(0)
    disc = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).build_discriminator().eval()  # no power iteration
    x, cond = torch.rand(1, 3, 64, 64), torch.randn(1, TINY_BETA["M"], 4, 4)
    feats = disc.features(x, cond)
    assert len(feats) == 5 and torch.equal(feats[-1], disc(x, cond))  # 4 activations, then the logits
    assert feature_matching_loss(feats[:-1], feats[:-1]).item() == 0.0
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    loss = feature_matching_loss(feats[:-1], disc.features(x_hat, cond)[:-1])
    loss.backward()
    assert loss.item() > 0 and x_hat.grad.abs().sum() > 0


def test_summary_line_shows_a_kid_spread_only_when_there_is_one():
    from common.evaluation import summary_line

    base = {"bpp": 0.1, "fid": 12.0, "kid": 0.01, "num_patches": 192}
    assert "+-" not in summary_line("m.pth", base | {"kid_std": 0.0})
    assert "every subset is the whole set" in summary_line("m.pth", base | {"kid_std": 0.0})
    assert "KID 0.01000 +- 0.00200 on 192" in summary_line("m.pth", base | {"kid_std": 0.002})
