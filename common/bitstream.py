"""The compressed file format, shared by every family.

Layout (all integers little-endian; ``varint`` is unsigned LEB128)::

    magic      4 bytes  b"VGAN"
    version    1 byte   FORMAT_VERSION
    family     1 byte   code from common.registry.FAMILIES
    model_id   8 bytes  first bytes of the sha256 of the model's weights and tables
    height     varint   original image size, before padding
    width      varint
    n_streams  1 byte
    lengths    varint x n_streams
    streams    the entropy-coded byte strings, back to back
    crc32      4 bytes  of everything before it

Every byte counts towards bpp. Parsing checks sizes against limits before allocating anything:
the declared image size against :data:`MAX_PIXELS` (the format's hard limit; decoders apply the
lower, configurable :func:`pixel_limit`), and the stream lengths against the file's length and
against :data:`MAX_BYTES_PER_PIXEL`.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from common.errors import CorruptFileError, VAEGANError

MAGIC = b"VGAN"
FORMAT_VERSION = 1
MAX_PIXELS = 1 << 28  # 268 megapixels: larger declared sizes are refused before any allocation
MAX_STREAMS = 16
# Streams larger than this per (64-padded) pixel are not a compressed image: raw RGB is 3 bytes/pixel,
# and even the worst symbol our coder can write costs under 7 bytes.
MAX_BYTES_PER_PIXEL = 32
PAD_BLOCK = 64
DEFAULT_MAX_PIXELS = 1 << 26  # 67 megapixels: the default limit for loading, encoding and decoding
MAX_PIXELS_ENV = "VAEGAN_MAX_PIXELS"


def env_limit(name: str, default: int, unit: str) -> int:
    """A positive limit from the environment variable ``name`` (``default`` when unset)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        limit = int(float(value))
    except ValueError:
        raise VAEGANError(f"${name} must be a number of {unit}, not {value!r}") from None
    if limit < 1:
        raise VAEGANError(f"${name} must be positive, not {value!r}")
    return limit


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else $VAEGAN_MAX_PIXELS, else 64 MP."""
    if max_pixels is not None:
        return int(max_pixels)
    return env_limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, "pixels")


def padded_pixels(size: tuple[int, int], multiple: int = PAD_BLOCK) -> int:
    """Pixels a model computes on for an image of ``size`` padded to ``multiple``."""
    h, w = size
    return (-(-h // multiple) * multiple) * (-(-w // multiple) * multiple)


@dataclass(frozen=True)
class Compressed:
    """What a model's ``compress`` returns and its ``decompress`` takes."""

    streams: list[bytes]
    size: tuple[int, int]  # original (height, width)


@dataclass(frozen=True)
class Header:
    family_code: int
    model_id: bytes
    size: tuple[int, int]


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"cannot write a negative size ({n})")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptFileError(f"file is truncated (while reading the {what})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        n, shift = 0, 0
        while True:
            byte = self.take(1, what)[0]
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7
            if shift > 35:
                raise CorruptFileError(f"file is damaged (the {what} is not a valid number)")


def pack(compressed: Compressed, family_code: int, model_id: bytes) -> bytes:
    h, w = compressed.size
    if len(compressed.streams) > MAX_STREAMS:
        raise ValueError("too many streams")
    body = bytearray(MAGIC)
    body += struct.pack("<BB", FORMAT_VERSION, family_code)
    body += model_id[:8].ljust(8, b"\0")
    body += _varint(h) + _varint(w)
    body.append(len(compressed.streams))
    for s in compressed.streams:
        body += _varint(len(s))
    for s in compressed.streams:
        body += s
    body += struct.pack("<I", zlib.crc32(body))
    return bytes(body)


def read_header(data: bytes) -> Header:
    """Parse and validate the header only (no checksum); enough to pick the right model."""
    return _parse(data, check_crc=False)[0]


def unpack(data: bytes) -> tuple[Header, Compressed]:
    """Validate the whole file (magic, version, sizes, lengths, checksum) and split it."""
    return _parse(data, check_crc=True)


HEAD_BYTES = len(MAGIC) + 2 + 8 + 2 * 5 + 1 + MAX_STREAMS * 5  # the longest header a file can have


def file_length(head: bytes) -> int:
    """The exact length of the file whose first bytes (at least :data:`HEAD_BYTES`, or all of it) are ``head``.

    Lets a reader take no more than a valid file can hold from any source (``/dev/zero``, a 1 GB
    foreign file): the header is checked as :func:`unpack` checks it, stream lengths included.
    """
    _, lengths, pos = _parse_head(head)
    return pos + sum(lengths) + 4


def _parse_head(data: bytes) -> tuple[Header, list[int], int]:
    """Header fields and stream lengths, checked; (header, lengths, offset of the first stream)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise CorruptFileError("not a VAE-GAN compressed file (wrong magic bytes)")
    r = _Reader(data)
    r.take(len(MAGIC), "magic")
    version, family_code = struct.unpack("<BB", r.take(2, "header"))
    if version != FORMAT_VERSION:
        raise CorruptFileError(
            f"file format version {version} is not supported (this code reads version {FORMAT_VERSION})"
        )
    model_id = r.take(8, "model identity")
    h, w = r.varint("image height"), r.varint("image width")
    if h < 1 or w < 1 or h * w > MAX_PIXELS:
        raise CorruptFileError(f"file declares an image of {h}x{w} pixels, outside the allowed range")
    n = r.take(1, "stream count")[0]
    if n > MAX_STREAMS:
        raise CorruptFileError(f"file declares {n} streams (at most {MAX_STREAMS} allowed)")
    lengths = [r.varint("stream length") for _ in range(n)]
    plausible = MAX_BYTES_PER_PIXEL * padded_pixels((h, w)) + 4096
    if sum(lengths) > plausible:
        raise CorruptFileError(
            f"file is damaged (its streams declare {sum(lengths)} bytes, implausible for an image "
            f"of {h}x{w} pixels)"
        )
    return Header(family_code=family_code, model_id=model_id, size=(h, w)), lengths, r.pos


def _parse(data: bytes, check_crc: bool) -> tuple[Header, Compressed]:
    header, lengths, pos = _parse_head(data)
    r = _Reader(data)
    r.pos = pos
    if sum(lengths) + r.pos + 4 != len(data):
        short = sum(lengths) + r.pos + 4 > len(data)
        raise CorruptFileError(
            "file is truncated" if short else "file has unexpected trailing bytes or bad stream lengths"
        )
    streams = [r.take(length, "streams") for length in lengths]
    if check_crc:
        (stored,) = struct.unpack("<I", r.take(4, "checksum"))
        if zlib.crc32(data[:-4]) != stored:
            raise CorruptFileError("file is damaged (checksum mismatch)")
    return header, Compressed(streams=streams, size=header.size)
