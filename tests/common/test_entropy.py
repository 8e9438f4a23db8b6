"""Entropy coding: exact symbol round trips, escapes, and rate estimates that match real bytes."""

import numpy as np
import pytest
import torch

from common.entropy import (
    EntropyBottleneck,
    GaussianConditional,
    TableSet,
    decode_symbols,
    encode_symbols,
    quantize_pmf,
)
from common.errors import CorruptFileError


def _tables(pmfs, offsets):
    t = TableSet()
    t.set([quantize_pmf(p, 1 - sum(p)) for p in pmfs], offsets)
    return t


def test_symbols_round_trip_exactly_including_escapes(rng):
    tables = _tables([[0.25, 0.5, 0.25], [0.1] * 9], [-1, -4])
    symbols = rng.integers(-3, 4, size=5000)
    symbols[:5] = [10**6, -(10**6), 70000, -70000, 0]  # far outside every table: escape path
    indexes = rng.integers(0, 2, size=5000)
    data = encode_symbols(symbols, indexes, tables)
    assert np.array_equal(decode_symbols(data, indexes, tables), symbols)


def test_decoding_with_other_indexes_does_not_give_the_symbols(rng):
    tables = _tables([[0.25, 0.5, 0.25], [0.1] * 9], [-1, -4])
    symbols = rng.integers(-1, 2, size=2000)
    indexes = np.zeros(2000, dtype=np.int64)
    data = encode_symbols(symbols, indexes, tables)
    assert not np.array_equal(decode_symbols(data, indexes + 1, tables), symbols)


def test_damaged_stream_length_is_reported():
    tables = _tables([[0.5, 0.5]], [0])
    with pytest.raises(CorruptFileError):
        decode_symbols(b"\x00\x01\x02", np.zeros(4, dtype=np.int64), tables)


def test_factorized_prior_round_trip_and_rate():
    torch.manual_seed(0)
    eb = EntropyBottleneck(8).eval()
    eb.update()
    z = torch.randn(2, 8, 6, 5) * 4
    data, z_hat = eb.compress(z)
    assert torch.equal(eb.decompress(data, z.shape), z_hat)
    assert torch.equal(z_hat, torch.round(z.double()))
    _, lik = eb(z)
    estimated = float(-torch.log2(lik).sum())
    assert abs(8 * len(data) - estimated) < 0.03 * estimated + 64  # 32-bit word padding


def test_factorized_tables_survive_a_state_dict_round_trip():
    eb = EntropyBottleneck(4)
    eb.update()
    fresh = EntropyBottleneck(4)
    fresh.load_state_dict(eb.state_dict())
    assert torch.equal(fresh.tables.counts, eb.tables.counts)


@pytest.mark.parametrize("spread", [0.2, 1.0, 8.0])
def test_gaussian_conditional_round_trip_and_rate(spread):
    torch.manual_seed(1)
    gc = GaussianConditional().eval()
    gc.update()
    means = torch.randn(1, 32, 16, 16) * 3
    scales = torch.rand_like(means) * spread + 0.11
    y = means + scales * torch.randn_like(means)
    data, y_hat = gc.compress(y, scales, means)
    assert torch.equal(gc.decompress(data, scales, means), y_hat)
    _, lik = gc(y.double(), scales.double(), means.double())
    estimated = float(-torch.log2(lik).sum())
    assert abs(8 * len(data) - estimated) < 0.02 * estimated + 64


def test_gaussian_likelihoods_sum_to_one_over_integers():
    gc = GaussianConditional()
    k = torch.arange(-60, 61, dtype=torch.float64)
    for s in (0.3, 2.0, 9.0):
        lik = gc.likelihood(k + 0.3, torch.full_like(k, s), torch.full_like(k, 0.3))
        assert abs(float(lik.sum()) - 1) < 1e-6


def test_training_mode_likelihood_uses_noise():
    gc = GaussianConditional().train()
    y = torch.zeros(1, 1, 64, 64)
    _, a = gc(y, torch.ones_like(y), torch.zeros_like(y))
    _, b = gc(y, torch.ones_like(y), torch.zeros_like(y))
    assert not torch.equal(a, b)


def test_chunks_round_trip_with_contexts_learned_while_decoding(rng):
    from common.entropy import ChunkDecoder, ChunkEncoder

    tables = _tables([[0.25, 0.5, 0.25], [0.1] * 9, [0.9, 0.1]], [-1, -4, 0])
    chunks = [rng.integers(-2, 3, size=50) for _ in range(6)]
    chunks[2][:2] = [70000, -5]  # escapes inside a chunk
    indexes = [np.zeros(50, dtype=np.int64)] + [np.abs(c) % 3 for c in chunks[:-1]]  # from the previous chunk
    enc = ChunkEncoder(tables)
    for c, i in zip(chunks, indexes):
        enc.encode(c, i)
    dec = ChunkDecoder(enc.finish(), tables)
    ctx = np.zeros(50, dtype=np.int64)
    for c in chunks:
        out = dec.decode(ctx)
        assert np.array_equal(out, c)
        ctx = np.abs(out) % 3
    with pytest.raises(CorruptFileError):
        ChunkDecoder(b"abc", tables)
    with pytest.raises(CorruptFileError, match="table index"):
        ChunkDecoder(enc.finish(), tables).decode(np.array([5]))


def test_left_context_prior_codes_a_grid_and_its_rate_matches_the_bytes(rng):
    from common.entropy import LeftContextPrior

    K = 8
    prior = LeftContextPrior(K)
    # a grid where each index mostly repeats its left neighbour: the context model should see it
    grid = np.zeros((2, 16, 64), dtype=np.int64)
    grid[..., 0] = rng.integers(0, K, size=(2, 16))
    for j in range(1, 64):
        change = rng.random((2, 16)) < 0.1
        grid[..., j] = np.where(change, rng.integers(0, K, size=(2, 16)), grid[..., j - 1])
    symbols = torch.from_numpy(grid)
    opt = torch.optim.Adam(prior.parameters(), lr=0.005)  # logits move by about logit_scale * lr a step
    for _ in range(150):
        loss = -torch.log2(prior(symbols)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    prior.update()
    data = prior.compress(symbols)
    assert torch.equal(prior.decompress(data, tuple(symbols.shape)), symbols)
    estimate = float(-torch.log2(prior(symbols)).sum())
    assert abs(8 * len(data) - estimate) < 0.05 * estimate + 64
    assert 8 * len(data) < 0.5 * symbols.numel() * np.log2(K)  # far below fixed-length indices


@pytest.mark.parametrize(
    "table",
    [torch.tensor([0.11]), torch.tensor([0.11, 0.2, 0.5, 3.0]), torch.tensor([-1.0, 1.0]), torch.ones(3, 2)],
)
def test_a_scale_table_the_index_arithmetic_cannot_serve_is_refused(table):
    """scale_indexes computes the nearest entry from log(scale): only log-uniform tables work."""
    with pytest.raises(ValueError, match="evenly spaced in log scale"):
        GaussianConditional(table)
    good = GaussianConditional()
    state = good.state_dict() | {"scale_table": table.double()}
    with pytest.raises(RuntimeError, match="scale_table"):
        good.load_state_dict(state)
    # a float16-stored default table (how shipped checkpoints hold it) still loads
    GaussianConditional().load_state_dict(
        good.state_dict() | {"scale_table": good.scale_table.half().double()}
    )
