"""Image -> file -> image: odd sizes, input modes, the wrong checkpoint, determinism across processes."""

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import load_image
from common.errors import CorruptFileError, ImageError, ModelMismatchError
from tests.conftest import ROOT, TINY_BETA, random_image


@pytest.fixture(scope="module")
def model(tiny_beta_path):
    return load_model(tiny_beta_path)


@pytest.mark.parametrize("size", [(1, 1), (3, 65), (64, 64), (100, 37), (65, 129)])
def test_any_size_round_trips_to_the_same_size(model, rng, size):
    image = random_image(rng, *size)
    data = compress_image(model, image)
    out = decompress_bytes(data, model)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, decompress_bytes(data, model))  # decoding is repeatable


def test_file_decoded_with_another_checkpoint_names_both(model, rng, tmp_path):
    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig

    torch.manual_seed(99)
    other_path = tmp_path / "other.pth"
    export_model(BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)), other_path)
    other = load_model(other_path)
    data = compress_image(model, random_image(rng, 32, 32))
    with pytest.raises(ModelMismatchError) as err:
        decompress_bytes(data, other)
    msg = str(err.value)
    assert model.identity().hex() in msg and other.identity().hex() in msg and "other.pth" in msg


def test_unknown_model_without_checkpoint_is_a_clear_error(model, rng):
    data = compress_image(model, random_image(rng, 16, 16))
    with pytest.raises(ModelMismatchError, match="--model_path"):
        decompress_bytes(data)


def test_damaged_file_never_decodes_to_an_image(model, rng):
    data = bytearray(compress_image(model, random_image(rng, 48, 48)))
    data[len(data) // 2] ^= 0x10
    with pytest.raises(CorruptFileError):
        decompress_bytes(bytes(data), model)


def test_decoding_is_bit_exact_in_a_fresh_process_with_other_threads(model, tiny_beta_path, rng, tmp_path):
    image = random_image(rng, 200, 300)
    data = compress_image(model, image)
    torch.set_num_threads(2)
    here = decompress_bytes(data, model)
    (tmp_path / "f.vgan").write_bytes(data)
    script = textwrap.dedent(f"""
        import sys, torch, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(1)
        from common.checkpoint import load_model
        from common.codec import decompress_bytes
        out = decompress_bytes(open({str(tmp_path / "f.vgan")!r}, 'rb').read(), load_model({str(tiny_beta_path)!r}))
        np.save({str(tmp_path / "out.npy")!r}, out)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.array_equal(np.load(tmp_path / "out.npy"), here)


def _save(img: Image.Image, tmp_path, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_image_modes_are_converted_explicitly(tmp_path, rng):
    rgb = Image.fromarray(random_image(rng, 20, 30))
    gray, _ = load_image(_save(rgb.convert("L"), tmp_path, "g.png"))
    assert gray.shape == (20, 30, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    palette, _ = load_image(_save(rgb.convert("P"), tmp_path, "p.png"))
    assert palette.shape == (20, 30, 3)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)
    white, notes = load_image(_save(rgba, tmp_path, "a.png"))
    assert (white == 255).all() and any("alpha" in n for n in notes)
    deep = Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    sixteen, notes = load_image(_save(deep, tmp_path, "d.png"))
    assert sixteen.dtype == np.uint8 and sixteen.max() > 200 and any("8 bits" in n for n in notes)
    cmyk, notes = load_image(_save(rgb.convert("CMYK"), tmp_path, "c.jpg"))
    assert cmyk.shape == (20, 30, 3) and any("CMYK" in n for n in notes)


def test_jpeg_exif_orientation_is_applied(tmp_path, rng):
    img = Image.fromarray(random_image(rng, 20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out, _ = load_image(_save(img, tmp_path, "o.jpg", exif=exif.tobytes()))
    assert out.shape == (40, 20, 3)


def test_unreadable_inputs_are_image_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    for name in ("bad.png", "cut.png", "missing.png", "."):
        with pytest.raises(ImageError):
            load_image(tmp_path / name)


def test_shipped_files_name_their_checkpoints_and_the_family_byte_is_checked(rng):
    """Messages name the shipped files, not only hex ids; a family byte that contradicts the identity is damage."""
    import struct
    import zlib

    from common import zoo
    from common.bitstream import MAGIC
    from common.registry import family_code

    # a β file given another shipped checkpoint (another β one, or else the first of another family)
    shipped = list(zoo.shipped("beta_vae_gan")) + list(zoo.shipped("hierarchical_vae_gan"))
    if len(shipped) < 2:
        pytest.skip("needs two shipped checkpoints, the first a beta_vae_gan one")
    (p1, _), (p2, _) = shipped[:2]
    data = compress_image(load_model(p1), random_image(rng, 64, 64))
    with pytest.raises(ModelMismatchError) as err:
        decompress_bytes(data, load_model(p2))
    assert p1.name in str(err.value) and p2.name in str(err.value)
    body = bytearray(data[:-4])
    body[len(MAGIC) + 1] = family_code("vq_vae_gan")
    forged = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(CorruptFileError, match="family byte says vq_vae_gan, but its model identity"):
        decompress_bytes(forged)
