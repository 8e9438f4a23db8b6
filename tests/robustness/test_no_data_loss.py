"""scripts/codec.py never replaces an input, never merges two outputs, and replaces outputs atomically."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

from common.errors import VAEGANError
from common.files import atomic_write
from tests.conftest import random_image, run_codec

codec = run_codec


def _one_line_error(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_outputs_never_replace_inputs_or_each_other(tiny_beta_path, tmp_path, rng):
    img = tmp_path / "x.png"
    Image.fromarray(random_image(rng, 40, 48)).save(img)
    before = img.read_bytes()
    _one_line_error(codec("compress", img, img, "--model_path", tiny_beta_path), "is an input")
    (tmp_path / "link.png").symlink_to(img)  # the same file under another name
    _one_line_error(
        codec("compress", img, tmp_path / "link.png", "--model_path", tiny_beta_path), "is an input"
    )
    assert img.read_bytes() == before

    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(random_image(rng, 40, 48)).save(album / "a.png")
    Image.fromarray(random_image(rng, 40, 48)).save(album / "a.jpg")
    r = codec("compress", album, tmp_path / "out", "--model_path", tiny_beta_path)
    _one_line_error(r, "a.jpg", "a.png", "would both be written to")
    assert not (tmp_path / "out").exists()  # refused before anything was written

    (album / "a.jpg").unlink()
    photo = (album / "a.png").read_bytes()
    assert codec("compress", album, album, "--model_path", tiny_beta_path).returncode == 0
    # the decoding of a.vgan would land on the original photo it was made from
    r = codec("decompress", album, album, "--model_path", tiny_beta_path)
    _one_line_error(r, "a.png exists", "--overwrite")
    assert (album / "a.png").read_bytes() == photo
    r = codec("compress", album, album, "--model_path", tiny_beta_path)
    _one_line_error(r, "a.vgan exists", "--overwrite")
    r = codec("compress", album, album, "--model_path", tiny_beta_path, "--overwrite")
    assert r.returncode == 0, r.stderr
    _one_line_error(codec("compress", img, img, "--model_path", tiny_beta_path, "--overwrite"), "is an input")


def test_output_problems_are_one_line(tiny_beta_path, tmp_path, rng):
    img = tmp_path / "x.png"
    Image.fromarray(random_image(rng, 40, 48)).save(img)
    # an existing folder as the output of one file: written into it, like cp
    (tmp_path / "dir").mkdir()
    assert codec("compress", img, tmp_path / "dir", "--model_path", tiny_beta_path).returncode == 0
    assert (tmp_path / "dir" / "x.vgan").is_file()
    # a missing parent is created
    assert (
        codec("compress", img, tmp_path / "new" / "sub" / "x.vgan", "--model_path", tiny_beta_path).returncode
        == 0
    )
    r = codec("decompress", tmp_path / "dir" / "x.vgan", tmp_path / "x.jpgg", "--model_path", tiny_beta_path)
    _one_line_error(r, "unknown image extension", ".png")
    r = codec("compress", tmp_path / "dir", img, "--model_path", tiny_beta_path)
    _one_line_error(r, "must be a folder too")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        _one_line_error(
            codec("compress", img, locked / "x.vgan", "--model_path", tiny_beta_path), "cannot write"
        )
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    r = codec("compress", img, blocker / "sub" / "x.vgan", "--model_path", tiny_beta_path)
    _one_line_error(r, "cannot create the output folder")


def test_an_existing_output_is_replaced_atomically(tmp_path, monkeypatch):
    target = tmp_path / "out.vgan"
    target.write_bytes(b"old contents")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"

    real_write = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_write(fd, mode)))
    with pytest.raises(VAEGANError, match="disk full writing .*out.vgan; it was left as it was"):
        atomic_write(target, b"never")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.vgan"]  # no temporary left behind


def test_a_cache_that_cannot_be_written_is_said_and_the_run_goes_on(tmp_path, capsys):
    from common.files import read_json, write_json

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    write_json(blocker / "sweep.json", {"a": 1}, best_effort=True)  # a cache: one line, no exception
    out = capsys.readouterr().out
    assert "sweep.json" in out and "result not cached" in out
    with pytest.raises(VAEGANError, match="sweep.json"):  # a result the user asked for: an error
        write_json(blocker / "sweep.json", {"a": 1})
    write_json(tmp_path / "c" / "ok.json", {"a": 1})
    assert read_json(tmp_path / "c" / "ok.json") == {"a": 1}
    (tmp_path / "c" / "torn.json").write_text('{"a": ')
    assert read_json(tmp_path / "c" / "torn.json") is None and read_json(tmp_path / "absent.json") is None


def test_fifo_in_an_input_folder_is_skipped(tiny_beta_path, tmp_path, rng):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(random_image(rng, 40, 48)).save(folder / "ok.png")
    os.mkfifo(folder / "pipe.png")  # opening it for reading would block forever
    r = codec("compress", folder, tmp_path / "out", "--model_path", tiny_beta_path)
    assert r.returncode == 0 and "pipe.png: not a regular file" in r.stderr, r.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok.vgan"]
    assert np.asarray(Image.open(folder / "ok.png")).shape == (40, 48, 3)


def test_reads_no_more_than_a_valid_file_holds(tiny_beta_path, tmp_path, rng):
    """/dev/zero, a FIFO, a large foreign file or trailing junk are refused without reading them through."""
    from common.codec import read_compressed
    from common.errors import CorruptFileError

    img = tmp_path / "x.png"
    Image.fromarray(random_image(rng, 40, 48)).save(img)
    assert codec("compress", img, tmp_path / "x.vgan", "--model_path", tiny_beta_path).returncode == 0
    good = (tmp_path / "x.vgan").read_bytes()
    assert read_compressed(tmp_path / "x.vgan") == good

    big = tmp_path / "foreign.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: reading it through would take seconds and memory
    with pytest.raises(CorruptFileError, match="wrong magic bytes"):
        read_compressed(big)
    (tmp_path / "junk.vgan").write_bytes(good + b"\0" * (1 << 20))
    with pytest.raises(CorruptFileError, match="trailing bytes"):
        read_compressed(tmp_path / "junk.vgan")
    with pytest.raises(VAEGANError, match="not a regular file"):
        read_compressed("/dev/zero")
    os.mkfifo(tmp_path / "pipe.vgan")
    with pytest.raises(VAEGANError, match="not a regular file"):
        read_compressed(tmp_path / "pipe.vgan")
    r = codec("decompress", "/dev/zero", tmp_path / "z.png", "--model_path", tiny_beta_path)
    _one_line_error(r, "not a regular file")


def test_non_utf8_file_names_round_trip(tiny_beta_path, tmp_path, rng):
    """A name that is not valid UTF-8 (bytes 0xff 0xfe) is coded, reported and decoded like any other."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"\xff\xfe photo.png")
    Image.fromarray(random_image(rng, 40, 48)).save(folder / odd)
    r = codec("compress", folder, tmp_path / "out", "--model_path", tiny_beta_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"\xff\xfe photo.vgan"]
    r = codec("decompress", tmp_path / "out", tmp_path / "back", "--model_path", tiny_beta_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert np.asarray(Image.open(tmp_path / "back" / odd)).shape == (40, 48, 3)
