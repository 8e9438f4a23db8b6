"""Shared pieces of the robustness tests: every family that imports, tiny models, file mutations.

A family is covered as soon as ``common.registry.model_class`` can import its model class, so new
families are fuzzed and checked for determinism without editing these tests.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import zlib
from dataclasses import dataclass, field

import torch

from common.bitstream import MAGIC, _Reader, _varint
from common.errors import CheckpointError
from common.registry import FAMILIES, model_class

# Known tiny configurations; other families get their defaults shrunk by :func:`_shrink`.
TINY_CONFIGS = {"beta_vae_gan": {"N": 16, "M": 24, "disc_channels": 8}}


def available_families() -> list[str]:
    """Families whose model class imports in this checkout."""
    names = []
    for name in FAMILIES:
        try:
            model_class(name)
        except CheckpointError:
            continue
        names.append(name)
    return names


def _shrink(config):
    """Divide every integer width of 32 or more by 8 (at least 8): a tiny but valid config."""
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 32:
            changes[f.name] = max(8, value // 8)
    return dataclasses.replace(config, **changes)


def tiny_model(family: str, seed: int = 0):
    """A randomly initialised, tiny model of ``family`` in eval mode with its coding tables."""
    cls = model_class(family)
    config = cls.Config(**TINY_CONFIGS[family]) if family in TINY_CONFIGS else _shrink(cls.Config())
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.update()
    return model


# --------------------------------------------------------------------------------------------------
# The file format as editable fields


@dataclass
class Fields:
    """A compressed file split into its fields (see common/bitstream.py for the layout)."""

    version: int
    family: int
    model_id: bytes
    height: int
    width: int
    streams: list[bytes] = field(default_factory=list)
    lengths: list[int] | None = None  # declared lengths; None: the true ones

    @classmethod
    def parse(cls, data: bytes) -> Fields:
        r = _Reader(data)
        r.take(len(MAGIC), "magic")
        version, family = struct.unpack("<BB", r.take(2, "header"))
        mid = r.take(8, "model id")
        h, w = r.varint("h"), r.varint("w")
        n = r.take(1, "n")[0]
        lengths = [r.varint("length") for _ in range(n)]
        streams = [r.take(k, "stream") for k in lengths]
        return cls(version, family, mid, h, w, streams)

    def body(self) -> bytes:
        out = bytearray(MAGIC) + struct.pack("<BB", self.version & 0xFF, self.family & 0xFF)
        out += self.model_id + _varint(self.height) + _varint(self.width)
        out.append(len(self.streams) & 0xFF)
        for k in self.lengths if self.lengths is not None else [len(s) for s in self.streams]:
            out += _varint(k)
        for s in self.streams:
            out += s
        return bytes(out)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _flip_bits(rng: random.Random, data: bytes, count: int, start: int = 0) -> bytes:
    out = bytearray(data)
    if len(out) <= start:
        return bytes(out)
    for _ in range(count):
        out[rng.randrange(start, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _size(rng: random.Random, current: int) -> int:
    near = max(0, current + rng.randrange(-3, 4))  # varints are unsigned
    return rng.choice([0, 1, 2, rng.randrange(1, 300), near, current * 2, 1 << rng.randrange(8, 40)])


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One random mutation of a valid file; returns the new bytes and what was done.

    Most mutations recompute the CRC so that the damage reaches the stream decoders.
    """
    f = Fields.parse(data)
    header_len = len(f.body()) - sum(len(s) for s in f.streams)
    kind = rng.choice(
        [
            "flip_streams",
            "flip_any",
            "flip_raw",
            "truncate_stream",
            "truncate_raw",
            "extend_stream",
            "extend_raw",
            "size",
            "lengths",
            "stream_count",
            "replace_stream",
            "swap_streams",
            "empty_streams",
            "family",
            "version",
            "model_id",
            "random_file",
        ]
    )
    if kind == "flip_streams":
        body = _flip_bits(rng, f.body(), rng.choice([1, 1, 2, 8, 64]), start=header_len)
        return with_crc(body), kind
    if kind == "flip_any":
        return with_crc(_flip_bits(rng, f.body(), rng.choice([1, 2, 8]))), kind
    if kind == "flip_raw":  # no CRC fix: the checksum must catch it
        return _flip_bits(rng, data, rng.choice([1, 2, 8])), kind
    if kind == "truncate_stream":
        i = rng.randrange(len(f.streams))
        cut = rng.randrange(len(f.streams[i]) + 1)
        if rng.random() < 0.7:
            cut -= cut % 4  # keep whole 32-bit words: the coder itself sees the short stream
        f.streams[i] = f.streams[i][:cut]
        return with_crc(f.body()), f"{kind}[{i}]->{cut}"
    if kind == "truncate_raw":
        cut = rng.randrange(len(data))
        return (with_crc(data[:cut]) if rng.random() < 0.5 else data[:cut]), f"{kind}->{cut}"
    if kind == "extend_stream":
        i = rng.randrange(len(f.streams))
        n = rng.choice([1, 4, 4, 16, 1000])
        f.streams[i] = f.streams[i] + _random_bytes(rng, n)
        return with_crc(f.body()), f"{kind}[{i}]+{n}"
    if kind == "extend_raw":
        extra = _random_bytes(rng, rng.choice([1, 4, 100]))
        return (with_crc(data[:-4] + extra) if rng.random() < 0.5 else data + extra), kind
    if kind == "size":
        f.height, f.width = _size(rng, f.height), _size(rng, f.width)
        return with_crc(f.body()), f"{kind}={f.height}x{f.width}"
    if kind == "lengths":
        true = [len(s) for s in f.streams]
        if rng.random() < 0.5 and len(true) > 1:  # move bytes between streams, same total
            shift = rng.randrange(-true[1], true[0] + 1)
            joined = b"".join(f.streams)
            f.streams = [joined[: true[0] - shift], joined[true[0] - shift :]] + f.streams[2:]
        else:
            f.lengths = [rng.choice([k, k + 1, max(0, k - 1), 0, 1 << rng.randrange(40)]) for k in true]
        return with_crc(f.body()), f"{kind}={f.lengths or [len(s) for s in f.streams]}"
    if kind == "stream_count":
        if rng.random() < 0.5 and f.streams:
            f.streams.pop(rng.randrange(len(f.streams)))
        else:
            f.streams.insert(rng.randrange(len(f.streams) + 1), _random_bytes(rng, rng.choice([0, 4, 12])))
        return with_crc(f.body()), f"{kind}={len(f.streams)}"
    if kind == "replace_stream":
        i = rng.randrange(len(f.streams))
        n = rng.choice([len(f.streams[i]), 4 * rng.randrange(0, 64)])
        f.streams[i] = _random_bytes(rng, n)
        return with_crc(f.body()), f"{kind}[{i}]={n}B"
    if kind == "swap_streams":
        f.streams = f.streams[::-1]
        return with_crc(f.body()), kind
    if kind == "empty_streams":
        f.streams = [b"" for _ in f.streams]
        return with_crc(f.body()), kind
    if kind == "family":
        f.family = rng.randrange(256)
        return with_crc(f.body()), f"{kind}={f.family}"
    if kind == "version":
        f.version = rng.randrange(256)
        return with_crc(f.body()), f"{kind}={f.version}"
    if kind == "model_id":
        f.model_id = _flip_bits(rng, f.model_id, 1)
        return with_crc(f.body()), kind
    # random_file: a valid header in front of random bytes
    f.streams = [_random_bytes(rng, 4 * rng.randrange(0, 100)) for _ in f.streams]
    return with_crc(f.body()), kind
