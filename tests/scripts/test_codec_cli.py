"""scripts/codec.py: round trip, clear one-line errors, folders that carry on past a bad file."""

import numpy as np
from PIL import Image

from tests.conftest import random_image, run_codec

codec = run_codec


def test_round_trip_and_errors(tiny_beta_path, tmp_path, rng):
    src = tmp_path / "in.png"
    Image.fromarray(random_image(rng, 70, 90)).save(src)
    r = codec("compress", src, tmp_path / "a.vgan", "--model_path", tiny_beta_path)
    assert r.returncode == 0, r.stderr and "bpp" in r.stdout
    r = codec("decompress", tmp_path / "a.vgan", tmp_path / "a.png", "--model_path", tiny_beta_path)
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "a.png")).shape == (70, 90, 3)

    data = (tmp_path / "a.vgan").read_bytes()
    cases = {
        "trunc.vgan": data[:-7],
        "flip.vgan": data[:30] + bytes([data[30] ^ 4]) + data[31:],
        "foreign.vgan": src.read_bytes(),
        "empty.vgan": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        r = codec("decompress", tmp_path / name, tmp_path / "x.png", "--model_path", tiny_beta_path)
        assert r.returncode == 2, name
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "x.png").exists()
    r = codec("compress", tmp_path / "nope.png", tmp_path / "n.vgan", "--model_path", tiny_beta_path)
    assert r.returncode == 2 and "not found" in r.stderr
    r = codec("compress", src, tmp_path / "n.vgan", "--model_path", tmp_path / "missing.pth")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr


def test_folder_reports_bad_files_and_carries_on(tiny_beta_path, tmp_path, rng):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(random_image(rng, 40, 50)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    r = codec("compress", folder, tmp_path / "out", "--model_path", tiny_beta_path)
    assert r.returncode == 1
    assert "broken.png" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.vgan", "ok1.vgan"]
    r = codec("decompress", tmp_path / "out", tmp_path / "back", "--model_path", tiny_beta_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "back").glob("*.png"))) == 2
