"""Decoder fuzzing: mutated files of every family end quickly, as an image or as our own error.

Each family gets FUZZ_CASES seeded mutations of valid files (bit flips, truncation, extension,
header fields, stream lengths and counts, random streams), most with the CRC recomputed so that
the damage reaches the entropy decoder and the model. Every case must finish within CASE_SECONDS
with either a uint8 image of the declared size or a :class:`VAEGANError` with a one-line message.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import resource
import signal
import time
import traceback

import numpy as np
import pytest

from common.bitstream import read_header, unpack
from common.codec import compress_image, decompress_bytes
from common.errors import CorruptFileError, VAEGANError
from tests.conftest import random_image
from tests.robustness.harness import Fields, available_families, mutate, tiny_model, with_crc

FUZZ_CASES = int(os.environ.get("VAEGAN_FUZZ_CASES", "2000"))
FUZZ_MAX_PIXELS = 256 * 256  # decoding limit in the fuzz run: declared sizes above it are refused
MAX_RSS_GROWTH_MB = 1024
CASE_SECONDS = 20.0  # generous: the CI machine may be busy; a typical case takes milliseconds
FAMILIES = available_families()


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _decode_one(data: bytes, model):
    """Returns ("image", shape) or ("error", type name); raises anything unexpected."""
    try:
        out = decompress_bytes(data, model, max_pixels=FUZZ_MAX_PIXELS)
    except VAEGANError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
        assert "allocate" not in msg, f"decoding tried a huge allocation: {msg}"
        return "error", type(exc).__name__
    h, w = read_header(data).size
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (h, w, 3)
    return "image", out.shape


@contextlib.contextmanager
def _memory_cap():
    """Cap the address space at its current size + 2 GB: a memory blow-up becomes an allocation
    error (which the tests report as a failure) instead of an out-of-memory machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as f:
            cap = int(f.read().split()[0]) * resource.getpagesize() + (2 << 30)
    except OSError:  # not Linux: no cap
        cap = None
    if cap is not None and (hard == resource.RLIM_INFINITY or cap < hard):
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module", params=FAMILIES)
def family_setup(request):
    model = tiny_model(request.param)
    rng = np.random.default_rng(7)
    bases = [compress_image(model, random_image(rng, h, w)) for h, w in ((64, 64), (40, 72), (1, 1))]
    return request.param, model, bases


def test_mutated_files_end_as_image_or_project_error(family_setup):
    family, model, bases = family_setup
    rng = random.Random(f"fuzz-{family}")
    outcomes: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    reached_decoder = 0
    failures = []
    slowest = 0.0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cap = _memory_cap()
    cap.__enter__()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.perf_counter()
    try:
        for case in range(FUZZ_CASES):
            data, what = mutate(rng, bases[case % len(bases)])
            kinds[what.split("[")[0].split("=")[0].split("->")[0].split("+")[0]] += 1
            try:
                unpack(data)
                reached_decoder += 1
            except VAEGANError:
                pass
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
            try:
                outcome = _decode_one(data, model)
            except CaseTimeout:
                failures.append(f"case {case} ({what}): no result within {CASE_SECONDS} s")
                continue
            except BaseException as exc:  # anything else is the bug we hunt
                if isinstance(exc, KeyboardInterrupt):
                    raise
                tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                failures.append(f"case {case} ({what}): {tb}")
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - t0)
            outcomes[outcome[0] if outcome[0] == "image" else outcome[1]] += 1
            grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
            if grown_mb > MAX_RSS_GROWTH_MB:
                failures.append(f"case {case} ({what}): peak memory grew by {grown_mb:.0f} MB")
                break
    finally:
        signal.signal(signal.SIGALRM, old)
        cap.__exit__(None, None, None)
    elapsed = time.perf_counter() - start
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(
        f"\n{family}: {FUZZ_CASES} mutated files in {elapsed:.1f} s (slowest {slowest:.2f} s), "
        f"{reached_decoder} passed the file checks; outcomes {dict(outcomes)}; "
        f"peak RSS growth {rss_growth_mb:.0f} MB"
    )
    assert not failures, f"{len(failures)} unexpected results, first ones:\n" + "\n".join(failures[:10])
    assert sum(outcomes.values()) == FUZZ_CASES
    # the mutations must reach the stream decoders, and must exercise both outcomes
    assert reached_decoder >= FUZZ_CASES // 3, reached_decoder
    assert outcomes["image"] > 0 and outcomes["CorruptFileError"] > 0
    assert rss_growth_mb < MAX_RSS_GROWTH_MB


def test_declared_size_over_the_limit_is_refused_before_decoding(family_setup, monkeypatch):
    family, model, bases = family_setup
    f = Fields.parse(bases[0])
    f.height, f.width = 10000, 10000  # 100 MP, within the format's hard limit
    data = with_crc(f.body())

    def never(*args, **kwargs):  # the model must not be asked to decode this
        raise AssertionError("decoder ran on an over-limit file")

    monkeypatch.setattr(model, "decompress", never)
    with pytest.raises(CorruptFileError, match="over the decoding limit"):
        decompress_bytes(data, model)
    monkeypatch.setenv("VAEGAN_MAX_PIXELS", "1000")
    f.height, f.width = 64, 64
    with pytest.raises(CorruptFileError, match="limit of 1000 pixels"):
        decompress_bytes(with_crc(f.body()), model)
    with pytest.raises(CorruptFileError, match="limit of 100 pixels"):
        decompress_bytes(with_crc(f.body()), model, max_pixels=100)


def test_padding_counts_towards_the_limit(family_setup):
    family, model, bases = family_setup
    p = model.pad_multiple
    if p == 1:
        pytest.skip(f"{family} does not pad")
    f = Fields.parse(bases[0])
    f.height, f.width = 1, 5000  # 5000 pixels declared, p x 5000+ computed
    with pytest.raises(CorruptFileError, match="padded"):
        decompress_bytes(with_crc(f.body()), model, max_pixels=p * 5000 - 1)


def test_implausible_stream_lengths_are_refused(family_setup):
    family, model, bases = family_setup
    f = Fields.parse(bases[2])  # a 1x1 image: at most 64 x 64 x 32 bytes of streams
    f.streams[0] = f.streams[0] + bytes(4 * 40_000)
    with pytest.raises(CorruptFileError, match="implausible"):
        decompress_bytes(with_crc(f.body()), model)


def test_hypothesis_byte_edits_with_valid_crc(family_setup):
    """Arbitrary byte edits anywhere in the body, CRC fixed: shrinks a failure to its cause."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    family, model, bases = family_setup

    @hypothesis.settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        base=st.sampled_from(bases),
        edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
        cut=st.integers(0, 64),
        tail=st.binary(max_size=16),
    )
    def check(base, edits, cut, tail):
        body = bytearray(base[:-4])
        for pos, value in edits:
            body[pos % len(body)] = value
        body = bytes(body[: len(body) - cut]) + tail
        _decode_one(with_crc(body), model)

    with _memory_cap():
        check()
