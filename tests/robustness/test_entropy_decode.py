"""decode_symbols on hostile streams: constriction's errors become CorruptFileError."""

from __future__ import annotations

import numpy as np
import pytest

from common.entropy import GaussianConditional, decode_symbols, encode_symbols
from common.errors import CorruptFileError


@pytest.fixture(scope="module")
def tables():
    gc = GaussianConditional()
    gc.update()
    return gc.tables


def test_round_trip_with_escapes(tables, rng):
    symbols = rng.integers(-5, 6, size=500)
    symbols[::50] = [10**6, -(10**6), 70_000, 3, 0, -1, 2**31 - 1, -(2**31), 5, 9]
    indexes = rng.integers(0, 96, size=500)
    data = encode_symbols(symbols, indexes, tables)
    assert np.array_equal(decode_symbols(data, indexes, tables), symbols)


def test_coder_errors_become_corrupt_file_errors(tables, monkeypatch):
    """constriction reports data no symbol can produce with an AssertionError: it must not escape."""
    import common.entropy

    class Decoder:
        def __init__(self, words):
            pass

        def decode(self, model, n):
            raise AssertionError("Tried to decode from compressed data that is invalid")

    monkeypatch.setattr(common.entropy.constriction.stream.queue, "RangeDecoder", Decoder)
    with pytest.raises(CorruptFileError, match="entropy-coded stream is damaged"):
        decode_symbols(b"\xff" * 12, np.zeros(10, dtype=np.int64), tables)


def test_streams_that_end_early_decode_to_symbols(tables, rng):
    """constriction reads zeros past the end: no error here (the file's CRC catches truncation)."""
    indexes = rng.integers(0, 96, size=200)
    data = encode_symbols(rng.integers(-3, 4, size=200), indexes, tables)
    for cut in (0, 4, len(data) // 2 // 4 * 4):
        try:
            out = decode_symbols(data[:cut], indexes, tables)
        except CorruptFileError:
            continue
        assert out.shape == (200,)


def test_bad_lengths_and_indexes(tables):
    with pytest.raises(CorruptFileError, match="multiple of 4"):
        decode_symbols(b"abc", np.zeros(3, dtype=np.int64), tables)
    with pytest.raises(CorruptFileError, match="table index out of range"):
        decode_symbols(b"", np.array([96]), tables)
    with pytest.raises(CorruptFileError, match="table index out of range"):
        decode_symbols(b"", np.array([-1]), tables)


def test_random_streams_never_raise_anything_else(tables):
    rng = np.random.default_rng(5)
    indexes = rng.integers(0, 96, size=300)
    for _ in range(300):
        data = rng.integers(0, 256, size=4 * int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            out = decode_symbols(data, indexes, tables)
        except CorruptFileError:
            continue
        assert out.shape == (300,)
