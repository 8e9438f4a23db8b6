"""The file format: round trip, and every kind of damage gives CorruptFileError."""

import pytest

from common.bitstream import MAX_PIXELS, Compressed, pack, read_header, unpack
from common.errors import CorruptFileError

MID = bytes(range(8))


def _file(streams=(b"abcd" * 10, b"xyz"), size=(512, 768)):
    return pack(Compressed(streams=list(streams), size=size), 1, MID)


def test_round_trip():
    data = _file()
    header, c = unpack(data)
    assert header.family_code == 1 and header.model_id == MID and header.size == (512, 768)
    assert c.streams == [b"abcd" * 10, b"xyz"] and c.size == (512, 768)
    assert read_header(data) == header


def test_header_overhead_is_small():
    assert len(_file(streams=(b"",))) <= 24


def test_every_truncation_is_detected():
    data = _file()
    for n in range(len(data)):
        with pytest.raises(CorruptFileError):
            unpack(data[:n])


def test_every_single_bit_flip_is_detected():
    data = _file()
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(CorruptFileError):
                unpack(bytes(damaged))


def test_trailing_bytes_are_detected():
    with pytest.raises(CorruptFileError, match="trailing"):
        unpack(_file() + b"\0")


def test_foreign_file_and_version():
    with pytest.raises(CorruptFileError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    data = bytearray(_file())
    data[4] = 99
    with pytest.raises(CorruptFileError, match="version 99"):
        read_header(bytes(data))


def test_declared_size_is_checked_before_allocation():
    with pytest.raises(CorruptFileError, match="outside the allowed range"):
        read_header(_file(size=(MAX_PIXELS, 2)))
