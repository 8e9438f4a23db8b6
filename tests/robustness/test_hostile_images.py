"""Hostile and unusual input images: each one loads (with a note) or fails with a clear ImageError."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from common.checkpoint import load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import load_image
from common.errors import ImageError
from tests.conftest import ROOT, random_image


@pytest.fixture(scope="module")
def model(tiny_beta_path):
    return load_model(tiny_beta_path)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (RGB, 8 bits) with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels declared, 100 bytes on disk
    with pytest.raises(ImageError, match="larger than the limit of 67108864 pixels"):
        load_image(path)
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match="limit of 5000 pixels"):
        load_image(tmp_path / "small.png", max_pixels=5000)
    monkeypatch.setenv("VAEGAN_MAX_PIXELS", "5000")
    with pytest.raises(ImageError, match="limit of 5000 pixels"):
        load_image(tmp_path / "small.png")
    assert load_image(tmp_path / "small.png", max_pixels=10_000)[0].shape == (100, 100, 3)


def test_zero_size_image_is_refused(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(_png_header_only(0, 10))
    with pytest.raises(ImageError, match="zero.png"):
        load_image(path)


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1), (2, 700)])
def test_tiny_and_extreme_aspect_ratio_images_round_trip(model, tmp_path, rng, size):
    h, w = size
    Image.fromarray(random_image(rng, h, w)).save(tmp_path / "x.png")
    image, _ = load_image(tmp_path / "x.png")
    assert image.shape == (h, w, 3)
    out = decompress_bytes(compress_image(model, image), model)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_images_over_the_limit_once_padded_are_refused_by_the_encoder(model, rng):
    with pytest.raises(ImageError, match="padded"):
        compress_image(model, random_image(rng, 1, 5000), max_pixels=64 * 5000 - 1)


def test_sixteen_bit_and_float_tiff(tmp_path):
    deep = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.tif")
    out, notes = load_image(tmp_path / "d.tif")
    assert out.shape == (20, 30, 3) and out.max() > 200 and any("8 bits" in n for n in notes)
    ramp = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    out, notes = load_image(tmp_path / "f.tif")
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and any("F image" in n for n in notes)
    ramp[0, :3] = [np.nan, np.inf, -np.inf]
    Image.fromarray(ramp).save(tmp_path / "nan.tif")
    out, notes = load_image(tmp_path / "nan.tif")
    assert out.shape == (20, 30, 3) and any("non-finite" in n for n in notes)


def test_cmyk_jpeg(tmp_path, rng):
    Image.fromarray(random_image(rng, 20, 30)).convert("CMYK").save(tmp_path / "c.jpg")
    out, notes = load_image(tmp_path / "c.jpg")
    assert out.shape == (20, 30, 3) and any("CMYK" in n for n in notes)


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_animated_images_give_their_first_frame_and_say_so(tmp_path, ext):
    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "lime", "blue")]
    path = tmp_path / f"anim.{ext}"
    try:
        frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    except (OSError, KeyError, ValueError):
        pytest.skip(f"this Pillow cannot write animated {ext}")
    out, notes = load_image(path)
    assert out.shape == (20, 30, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50  # red: the first frame
    assert any("3 frames: only the first is used" in n for n in notes)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_image_errors(tmp_path, rng, fmt):
    buf = io.BytesIO()
    Image.fromarray(random_image(rng, 40, 60)).save(buf, fmt)
    data = buf.getvalue()
    for cut in (len(data) // 2, len(data) - 30, 20):
        path = tmp_path / f"cut{cut}.{fmt.lower()}"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageError, match=path.name):
            load_image(path)


def test_folder_and_missing_path(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="got a folder"):
        load_image(tmp_path / "dir.png")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_folder_run_reports_each_bad_file_and_carries_on(tiny_beta_path, tmp_path, rng):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(random_image(rng, 30, 40)).save(folder / "good.png")
    Image.fromarray(random_image(rng, 1, 300)).save(folder / "line.png")
    (folder / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    (folder / "zero.png").write_bytes(_png_header_only(0, 10))
    buf = io.BytesIO()
    Image.fromarray(random_image(rng, 40, 60)).save(buf, "JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[:200])
    (folder / "dir.png").mkdir()
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
    run = [sys.executable, str(ROOT / "scripts" / "codec.py")]
    r = subprocess.run(
        [*run, "compress", folder, tmp_path / "out", "--model_path", tiny_beta_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    for bad in ("bomb.png", "zero.png", "cut.jpg", "dir.png"):
        assert f"{bad}:" in r.stderr, (bad, r.stderr)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.vgan", "line.vgan"]
    (tmp_path / "out" / "junk.vgan").write_bytes(b"VGAN\x01junk")
    r = subprocess.run(
        [*run, "decompress", tmp_path / "out", tmp_path / "back", "--model_path", tiny_beta_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "junk.vgan" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["good.png", "line.png"]


def test_evaluation_skips_bad_images_and_carries_on(model, tmp_path, rng):
    from common.evaluation import evaluate_checkpoint

    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(random_image(rng, 32, 48)).save(folder / "good.png")
    (folder / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    summary, rows = evaluate_checkpoint(
        model, sorted(folder.iterdir()), tmp_path / "eval", save_recon=False, progress=False
    )
    assert [r["image"] for r in rows] == ["good.png"] and summary["bpp"] > 0


def test_only_the_formats_we_mean_to_read(tmp_path, monkeypatch, rng):
    """EPS/PS is never handed to Ghostscript, whatever the file is called; other formats still load."""
    from PIL import EpsImagePlugin

    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a) or None)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\n%%EOF\n"
    for name in ("drawing.eps", "photo.png", "photo.jpg"):
        (tmp_path / name).write_bytes(eps)
        with pytest.raises(ImageError, match="not an image in a format we read"):
            load_image(tmp_path / name)
    assert calls == []
    (tmp_path / "icon.ico").write_bytes(b"")
    Image.fromarray(random_image(rng, 16, 16)).save(tmp_path / "icon.ico")  # a format we never meant
    with pytest.raises(ImageError, match=r"\(PNG, JPEG"):
        load_image(tmp_path / "icon.ico")
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "pgm")):
        Image.fromarray(random_image(rng, 20, 24)).save(tmp_path / f"ok.{ext}", format=fmt)
        assert load_image(tmp_path / f"ok.{ext}")[0].shape == (20, 24, 3)


@pytest.mark.parametrize("error", [TypeError("bad EXIF rational"), KeyError(274), ZeroDivisionError()])
def test_non_pillow_errors_while_decoding_are_image_errors(tmp_path, monkeypatch, rng, error):
    """Malformed EXIF or TIFF tags make Pillow raise whatever its parser hits; each is one ImageError."""
    from PIL import ImageOps

    path = tmp_path / "odd.jpg"
    Image.fromarray(random_image(rng, 20, 24)).save(path)

    def broken(img):
        raise error

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with pytest.raises(ImageError, match=f"odd.jpg: cannot decode image \\({type(error).__name__}"):
        load_image(path)


def test_memory_over_the_budget_is_refused_before_running(monkeypatch, rng):
    """Coding memory is estimated from the size (activations per pixel; the hierarchical attention's n²
    scores on top): over $VAEGAN_MAX_MEMORY the encoder refuses the image and the decoder the file
    (a tiny file may declare a huge image) before the network runs."""
    from common.bitstream import MAGIC, pack, unpack
    from common.codec import memory_limit
    from common.errors import VAEGANError
    from common.registry import family_code
    from tests.robustness.harness import tiny_model

    hier, beta = tiny_model("hierarchical_vae_gan"), tiny_model("beta_vae_gan")
    image = random_image(rng, 128, 192)
    small, large = hier.memory_bytes((128, 192)), hier.memory_bytes((4096, 4096))
    attention = (
        hier.memory_bytes((4096, 4096)) - beta.memory_bytes((4096, 4096)) * hier.config.N // beta.config.N
    )
    assert 0 < small < large and attention > 0  # the n² term is there
    assert beta.memory_bytes((2 * 128, 2 * 192)) == 4 * beta.memory_bytes((128, 192))  # linear in pixels
    data = compress_image(hier, image)
    monkeypatch.setenv("VAEGAN_MAX_MEMORY", str(small - 1))
    ran = []
    monkeypatch.setattr(hier, "compress", lambda *a, **k: ran.append(1))
    monkeypatch.setattr(hier, "decompress", lambda *a, **k: ran.append(1))
    with pytest.raises(ImageError, match=r"128x192 image needs about .* GiB .*VAEGAN_MAX_MEMORY"):
        compress_image(hier, image)
    with pytest.raises(VAEGANError, match="needs about"):
        decompress_bytes(data, hier)
    assert ran == []
    # a file of a few bytes declaring 8192x8192 pixels: refused from its header under a 1 GiB budget
    monkeypatch.setenv("VAEGAN_MAX_MEMORY", str(1 << 30))
    _, compressed = unpack(compress_image(beta, image))
    forged = pack(
        type(compressed)(streams=compressed.streams, size=(8192, 8192)),
        family_code("beta_vae_gan"),
        beta.identity(),
    )
    assert forged[: len(MAGIC)] == MAGIC and len(forged) < 2000
    with pytest.raises(VAEGANError, match=r"8192x8192 image needs about [0-9.]+ GiB"):
        decompress_bytes(forged, beta)
    monkeypatch.setenv("VAEGAN_MAX_MEMORY", "lots")
    with pytest.raises(VAEGANError, match="must be a number of bytes"):
        memory_limit()
