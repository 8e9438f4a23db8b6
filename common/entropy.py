"""Entropy models and the only import of ``constriction``.

Three priors, one coding path:

* :class:`EntropyBottleneck` -- a factorized prior: one learned univariate CDF per channel
  (Ballé et al. 2018, appendix 6.1). Used for hyper-latents and top levels.
* :class:`GaussianConditional` -- a mean-scale Gaussian whose scales are snapped to a fixed table
  (Minnen et al. 2018). Used for latents whose parameters a hyper-decoder predicts.
* :class:`CategoricalPrior` -- learned categorical distributions over discrete indices, one per
  context (a table row per context). Used for vector-quantizer indices.

In training the first two return likelihoods of ``y + U(-1/2, 1/2)``, whose negative log2 is the rate in
bits (and, because the uniform posterior has unit density, the KL term of the ELBO). For coding,
``update()`` turns each prior into integer probability tables stored as buffers, so encoder and
decoder share exactly the same tables whatever device computed them. Only integer symbols and
integer table indexes reach :func:`encode_symbols` / :func:`decode_symbols`.
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import CorruptFileError
from common.layers import lower_bound

PMF_PRECISION = 20  # probability tables are integer counts summing to about 2**20
LIKELIHOOD_BOUND = 1e-9
ESCAPE_CHUNK = 1 << 16  # escaped values are sent as two 16-bit halves of their zig-zag code


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


# --------------------------------------------------------------------------------------------------
# Integer tables and the coder


def quantize_pmf(pmf: np.ndarray, tail: float) -> np.ndarray:
    """Integer counts for ``pmf`` plus one escape bin holding ``tail``; every bin at least 1."""
    probs = np.append(np.asarray(pmf, dtype=np.float64), max(tail, 0.0))
    counts = np.maximum(1, np.round(probs * (1 << PMF_PRECISION))).astype(np.int64)
    return counts


class TableSet(nn.Module):
    """A padded stack of integer tables: row t covers symbols offset[t] .. offset[t]+length[t]-1.

    Column ``length[t]`` of row t is the escape bin. The buffers change shape on ``update()``, so
    loading resizes them to what the checkpoint holds.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("counts", torch.zeros(0, 0, dtype=torch.int64))
        self.register_buffer("offset", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("length", torch.zeros(0, dtype=torch.int64))

    def set(self, rows: list[np.ndarray], offsets: list[int]) -> None:
        width = max(len(r) for r in rows)
        counts = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            counts[i, : len(r)] = r
        dev = self.counts.device
        self.counts = torch.from_numpy(counts).to(dev)
        self.offset = torch.tensor(offsets, dtype=torch.int64, device=dev)
        self.length = torch.tensor([len(r) - 1 for r in rows], dtype=torch.int64, device=dev)

    @property
    def ready(self) -> bool:
        return self.counts.numel() > 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("counts", "offset", "length"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key], device=self.counts.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def models(self) -> list:
        counts = self.counts.cpu().numpy()
        lengths = self.length.cpu().numpy()
        return [
            constriction.stream.model.Categorical(
                counts[t, : lengths[t] + 1].astype(np.float64), perfect=False
            )
            for t in range(len(lengths))
        ]


def _groups(indexes: np.ndarray):
    """Stable order grouping equal table indexes: the order both coder and decoder walk."""
    order = np.argsort(indexes, kind="stable")
    sorted_idx = indexes[order]
    tables, starts = np.unique(sorted_idx, return_index=True)
    ends = np.append(starts[1:], len(order))
    return order, list(zip(tables.tolist(), starts.tolist(), ends.tolist()))


# constriction signals data that no symbol of the model can produce with these
CONSTRICTION_ERRORS = (AssertionError, RuntimeError, ValueError, OverflowError)


def _damaged(exc: Exception) -> CorruptFileError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CorruptFileError(f"entropy-coded stream is damaged ({first})")


def _range_decoder(data: bytes):
    if len(data) % 4:
        raise CorruptFileError("entropy-coded stream has a length that is not a multiple of 4")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))


def _checked_indexes(indexes: np.ndarray, num_tables: int) -> np.ndarray:
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    if indexes.size and (indexes.min() < 0 or indexes.max() >= num_tables):
        raise CorruptFileError("table index out of range")
    return indexes


def _encode_escapes(encoder, escaped: np.ndarray) -> None:
    """Values outside their table, as two 16-bit halves of their zig-zag code."""
    if not escaped.size:
        return
    zigzag = np.where(escaped >= 0, 2 * escaped, -2 * escaped - 1)
    if zigzag.max() >= ESCAPE_CHUNK**2:
        raise ValueError("latent value too large to code")
    uniform = constriction.stream.model.Uniform(ESCAPE_CHUNK)
    encoder.encode((zigzag % ESCAPE_CHUNK).astype(np.int32), uniform)
    encoder.encode((zigzag // ESCAPE_CHUNK).astype(np.int32), uniform)


def _decode_escapes(decoder, count: int) -> np.ndarray:
    uniform = constriction.stream.model.Uniform(ESCAPE_CHUNK)
    low = decoder.decode(uniform, count).astype(np.int64)
    high = decoder.decode(uniform, count).astype(np.int64)
    zigzag = high * ESCAPE_CHUNK + low
    return np.where(zigzag % 2 == 0, zigzag // 2, -(zigzag + 1) // 2)


def encode_symbols(symbols: np.ndarray, indexes: np.ndarray, tables: TableSet) -> bytes:
    """Range-code integer ``symbols``, each with the table row named by ``indexes``."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    offsets = tables.offset.cpu().numpy()
    lengths = tables.length.cpu().numpy()
    models = tables.models()
    encoder = constriction.stream.queue.RangeEncoder()
    order, groups = _groups(indexes)
    sorted_sym = symbols[order]
    escaped = []
    for t, start, end in groups:
        values = sorted_sym[start:end] - offsets[t]
        is_escape = (values < 0) | (values >= lengths[t])
        encoder.encode(np.where(is_escape, lengths[t], values).astype(np.int32), models[t])
        escaped.append(sorted_sym[start:end][is_escape])
    escaped = np.concatenate(escaped) if escaped else np.zeros(0, dtype=np.int64)
    _encode_escapes(encoder, escaped)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, indexes: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; ``indexes`` must equal the encoder's.

    Damage surfaces as :class:`CorruptFileError`. constriction signals data that no symbol of the
    model can produce with an ``AssertionError`` (caught here); a stream that ends early is padded
    with zero words by constriction and decodes to symbols, so its damage is caught by the file's
    checksum, not here.
    """
    decoder = _range_decoder(data)
    offsets = tables.offset.cpu().numpy()
    lengths = tables.length.cpu().numpy()
    indexes = _checked_indexes(indexes, len(lengths))
    models = tables.models()
    order, groups = _groups(indexes)
    out_sorted = np.empty(indexes.size, dtype=np.int64)
    escape_slots = []
    try:
        for t, start, end in groups:
            cats = decoder.decode(models[t], end - start).astype(np.int64)
            is_escape = cats == lengths[t]
            out_sorted[start:end] = cats + offsets[t]
            escape_slots.append(np.flatnonzero(is_escape) + start)
        slots = np.concatenate(escape_slots) if escape_slots else np.zeros(0, dtype=np.int64)
        if slots.size:
            out_sorted[slots] = _decode_escapes(decoder, slots.size)
    except CONSTRICTION_ERRORS as exc:
        raise _damaged(exc) from None
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


# --------------------------------------------------------------------------------------------------
# Factorized prior


def _float32_outside_autocast(forward):
    """``forward`` run in float32 with autocast off, when autocast is on (else exactly as it is)."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        first = next((a for a in args if torch.is_tensor(a)), None)
        if first is None or not torch.is_autocast_enabled(first.device.type):
            return forward(self, *args, **kwargs)
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast(first.device.type, enabled=False):
            return forward(self, *args, **kwargs)

    return wrapper


class EntropyModel(nn.Module):
    """Base of every prior: ``tables`` (a :class:`TableSet`) and ``update()`` for coding, and a
    training forward that stays in float32 under bf16 autocast (rates need more than bf16's 8 bits
    of mantissa): every subclass's ``forward`` is wrapped on definition, nothing is patched later."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:
            cls.forward = _float32_outside_autocast(cls.__dict__["forward"])

    def update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class EntropyBottleneck(EntropyModel):
    """Factorized prior with a learned, non-parametric CDF per channel (Ballé et al. 2018).

    Symbols are ``round(z)``; the table of channel c spans the integers between its learned
    ``tail_mass/2`` and ``1 - tail_mass/2`` quantiles, with an escape bin for the rest.
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
        max_range: int = 2048,
    ):
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        self.max_range = max_range
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.tables = TableSet()

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, N) -> logits of the CDF at x, same shape."""
        logits = x
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix.to(x.dtype)), logits) + self.biases[i].to(x.dtype)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(logits)
        return logits

    def _likelihood(self, x: torch.Tensor) -> torch.Tensor:
        lower = self._logits_cumulative(x - 0.5)
        upper = self._logits_cumulative(x + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (z_hat, likelihoods). Training: z + U(-1/2, 1/2); evaluation: round(z)."""
        if self.training:
            z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        else:
            z_hat = torch.round(z)
        flat = z_hat.transpose(0, 1).reshape(self.channels, 1, -1)
        lik = self._likelihood(flat.float()).reshape(self.channels, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return z_hat, lower_bound(lik, LIKELIHOOD_BOUND)

    @torch.no_grad()
    def update(self) -> None:
        """Rebuild the integer tables from the current CDF (float64, on CPU)."""
        target = math.log(self.tail_mass / 2) - math.log1p(-self.tail_mass / 2)
        quantiles = []
        for goal in (target, -target):
            lo = torch.full((self.channels, 1, 1), -float(self.max_range), dtype=torch.float64)
            hi = -lo
            for _ in range(60):  # bisection on the monotone CDF logits
                mid = (lo + hi) / 2
                above = self._cpu64_logits(mid) > goal
                hi = torch.where(above, mid, hi)
                lo = torch.where(above, lo, mid)
            quantiles.append(((lo + hi) / 2).flatten())
        rows, offsets = [], []
        for c in range(self.channels):
            start = int(math.floor(quantiles[0][c]))
            stop = max(int(math.ceil(quantiles[1][c])), start + 1)
            xs = torch.arange(start, stop + 1, dtype=torch.float64).view(1, 1, -1)
            pmf = self._cpu64_likelihood(xs, c).flatten().numpy()
            rows.append(quantize_pmf(pmf, 1.0 - pmf.sum()))
            offsets.append(start)
        self.tables.set(rows, offsets)

    def _cpu64_logits(self, x: torch.Tensor, channel: int | None = None) -> torch.Tensor:
        logits = x
        sl = slice(None) if channel is None else slice(channel, channel + 1)
        for i, matrix in enumerate(self.matrices):
            m = F.softplus(matrix.detach().double().cpu()[sl])
            logits = torch.matmul(m, logits) + self.biases[i].detach().double().cpu()[sl]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].detach().double().cpu()[sl]) * torch.tanh(logits)
        return logits

    def _cpu64_likelihood(self, x: torch.Tensor, channel: int) -> torch.Tensor:
        lower = self._cpu64_logits(x - 0.5, channel)
        upper = self._cpu64_logits(x + 0.5, channel)
        sign = -torch.sign(lower + upper)
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def _indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        b, c, h, w = shape
        return np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), (b, c, h, w))

    def compress(self, z: torch.Tensor) -> tuple[bytes, torch.Tensor]:
        """Code round(z); returns the bytes and z_hat exactly as the decoder will see it."""
        z_hat = torch.round(z.detach().double().cpu())
        data = encode_symbols(z_hat.numpy().astype(np.int64), self._indexes(z.shape), self.tables)
        return data, z_hat

    def decompress(self, data: bytes, shape: tuple[int, ...]) -> torch.Tensor:
        symbols = decode_symbols(data, self._indexes(shape), self.tables)
        return torch.from_numpy(symbols.reshape(shape)).double()


# --------------------------------------------------------------------------------------------------
# Mean-scale Gaussian conditional


def default_scale_table(lo: float = 0.11, hi: float = 64.0, levels: int = 96) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(lo), math.log(hi), levels, dtype=torch.float64))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def _check_log_uniform(table: torch.Tensor) -> None:
    """:meth:`GaussianConditional.scale_indexes` snaps to the table by arithmetic on log(scale),
    valid only for scales evenly spaced in log scale (float16 storage moves them by < 0.1%)."""
    table = table.double()
    ok = table.ndim == 1 and len(table) >= 2 and bool((table > 0).all())
    if ok:
        steps = torch.diff(torch.log(table))
        ok = bool(torch.allclose(steps, steps.mean().expand_as(steps), rtol=0, atol=2e-3))
    if not ok:
        raise ValueError("the scale table must hold at least 2 positive scales, evenly spaced in log scale")


class GaussianConditional(EntropyModel):
    """Mean-scale Gaussian prior convolved with U(-1/2, 1/2); scales snap to a fixed log-spaced table.

    Symbols are ``round(y - mean)`` coded with the table of the nearest (in log scale) table scale.
    """

    def __init__(self, scale_table: torch.Tensor | None = None, tail_sigmas: float = 6.0):
        super().__init__()
        table = default_scale_table() if scale_table is None else scale_table.double()
        _check_log_uniform(table)
        self.register_buffer("scale_table", table)
        self.scale_bound = float(table[0])
        self.tail_sigmas = tail_sigmas
        self.tables = TableSet()

    def likelihood(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        scales = lower_bound(scales, self.scale_bound)
        v = torch.abs(y - means)
        upper = _std_normal_cdf((0.5 - v) / scales)
        lower = _std_normal_cdf((-0.5 - v) / scales)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor):
        """Returns (y_hat for the decoder, likelihoods).

        Training: the rate sees y + U(-1/2, 1/2) while the decoder already sees the rounded latent
        (straight-through), which closes most of the train/test gap (Minnen & Singh 2020).
        """
        y_hat = round_ste(y - means) + means
        y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else y_hat
        return y_hat, self.likelihood(y_rate, scales, means)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        table = state_dict.get(prefix + "scale_table")
        if table is not None:
            try:
                _check_log_uniform(table)
            except ValueError as exc:
                raise RuntimeError(f"{prefix}scale_table: {exc}") from None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update(self) -> None:
        rows, offsets = [], []
        for s in self.scale_table.cpu().tolist():
            r = max(1, int(math.ceil(self.tail_sigmas * s)))
            k = torch.arange(-r, r + 1, dtype=torch.float64)
            pmf = (_std_normal_cdf((k + 0.5) / s) - _std_normal_cdf((k - 0.5) / s)).numpy()
            rows.append(quantize_pmf(pmf, 1.0 - pmf.sum()))
            offsets.append(-r)
        self.tables.set(rows, offsets)

    def scale_indexes(self, scales: torch.Tensor) -> np.ndarray:
        """Nearest table entry in log scale; computed in float64 on CPU on both sides."""
        table = self.scale_table.cpu()
        log_s = torch.log(scales.detach().double().cpu().clamp_min(float(table[0])))
        step = (math.log(float(table[-1])) - math.log(float(table[0]))) / (len(table) - 1)
        idx = torch.round((log_s - math.log(float(table[0]))) / step)
        return idx.clamp(0, len(table) - 1).long().numpy()

    def compress(
        self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor
    ) -> tuple[bytes, torch.Tensor]:
        means = means.detach().double().cpu()
        symbols = torch.round(y.detach().double().cpu() - means)
        data = encode_symbols(symbols.numpy().astype(np.int64), self.scale_indexes(scales), self.tables)
        return data, symbols + means

    def decompress(self, data: bytes, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        symbols = decode_symbols(data, self.scale_indexes(scales), self.tables)
        means = means.detach().double().cpu()
        return torch.from_numpy(symbols.reshape(means.shape)).double() + means


# --------------------------------------------------------------------------------------------------
# Spatial context: the checkerboard


def checkerboard(h: int, w: int, device=None) -> torch.Tensor:
    """(h, w) bool, True at the anchors ((i + j) even): the half of the positions coded first."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return (i + j) % 2 == 0


class CheckerboardContext(nn.Module):
    """The two-pass spatial context of He et al. 2021 ("Checkerboard context model for efficient
    learned image compression") for a mean-scale Gaussian prior.

    The anchors (half the positions, :func:`checkerboard`) are coded with the hyperprior's
    (sigma, mu); every other position with (sigma, mu) refined from the decoded anchors around it (a
    5x5 convolution whose kernel reads only anchors) and the hyperprior's own. Decoding stays
    parallel: two passes, not one per position as in a raster-scan context. The refinement's last
    layer starts at zero, so an untrained context is the hyperprior alone, and a trained model can
    gain one without changing anything else (``--init_from`` with the transforms frozen).

    Both coder and decoder run it in float64 on the CPU (:meth:`coding_copy`): they must derive
    identical scale-table indexes, as with ``h_s``.
    """

    def __init__(self, channels: int):
        super().__init__()
        C = channels
        self.context = nn.Conv2d(C, 2 * C, 5, padding=2)
        d = torch.arange(5) - 2
        self.register_buffer("kernel_mask", ((d[:, None] + d[None, :]) % 2 == 1).float(), persistent=False)
        self.refine = nn.Sequential(
            nn.Conv2d(4 * C, 3 * C, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(3 * C, 2 * C, 1)
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, anchors_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor):
        """(scales, means) of every position: the hyperprior's at the anchors, refined elsewhere.

        ``anchors_hat`` holds the decoded anchors (the other positions are ignored, set to 0 here)."""
        anchor = checkerboard(*anchors_hat.shape[-2:], anchors_hat.device)
        weight = self.context.weight * self.kernel_mask.to(self.context.weight.dtype)
        ctx = F.conv2d(anchors_hat * anchor, weight, self.context.bias, padding=2)
        params = torch.cat([scales, means], dim=1)
        refined_scales, refined_means = (params + self.refine(torch.cat([params, ctx], dim=1))).chunk(
            2, dim=1
        )
        return torch.where(anchor, scales, refined_scales), torch.where(anchor, means, refined_means)

    def coding_copy(self) -> CheckerboardContext:
        import copy

        return copy.deepcopy(self).double().cpu()


# --------------------------------------------------------------------------------------------------
# Categorical prior over discrete indices


class CategoricalPrior(EntropyModel):
    """A learned categorical distribution over ``num_symbols`` indices, one per context.

    ``logits[c] = logit_scale * (base + delta[c])``: a shared marginal plus a per-context correction,
    so a context seen rarely falls back to the marginal. Adam moves each raw parameter by about
    ``lr`` per step, so ``logit_scale`` lets the table learn at a useful speed at a network's
    learning rate; the gradient is passed through unscaled, so the prior does not dominate the
    global gradient-norm clipping of the loop. Contexts must be known to the decoder before it decodes a symbol (e.g. the index
    chosen by the previous residual-VQ stage at the same position), so a whole stage decodes at once.

    In training, the likelihood of each (detached) symbol is its probability: ``-log2`` of it is the
    real cross-entropy in bits, and minimising the rate fits the prior. ``update()`` snaps every
    context's distribution to an integer table row (row = context), shared by coder and decoder.
    """

    def __init__(self, num_symbols: int, num_contexts: int = 1, logit_scale: float = 100.0):
        super().__init__()
        self.num_symbols = num_symbols
        self.num_contexts = num_contexts
        self.logit_scale = logit_scale
        self.base = nn.Parameter(torch.zeros(num_symbols))
        self.delta = nn.Parameter(torch.zeros(num_contexts, num_symbols))
        self.tables = TableSet()

    def log_probs(self) -> torch.Tensor:
        """(num_contexts, num_symbols) natural-log probabilities."""
        raw = self.base + self.delta
        logits = raw + ((self.logit_scale - 1) * raw).detach()  # value scale * raw, gradient that of raw
        return F.log_softmax(logits, dim=-1)

    def _contexts(self, symbols: torch.Tensor, contexts: torch.Tensor | None) -> torch.Tensor:
        if contexts is None:
            return torch.zeros_like(symbols)
        if contexts.shape != symbols.shape:
            raise ValueError(f"contexts {tuple(contexts.shape)} must match symbols {tuple(symbols.shape)}")
        return contexts

    def forward(self, symbols: torch.Tensor, contexts: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood of each symbol (same shape as ``symbols``); gradients reach only the prior."""
        symbols = symbols.detach().long()
        contexts = self._contexts(symbols, contexts).detach().long()
        log_p = self.log_probs()[contexts.reshape(-1), symbols.reshape(-1)].view(symbols.shape)
        return lower_bound(log_p.exp(), LIKELIHOOD_BOUND)

    @torch.no_grad()
    def update(self) -> None:
        logits = self.logit_scale * (self.base.detach().double().cpu() + self.delta.detach().double().cpu())
        probs = torch.softmax(logits, dim=-1).numpy()
        self.tables.set([quantize_pmf(p, 0.0) for p in probs], [0] * self.num_contexts)

    def compress(self, symbols: torch.Tensor, contexts: torch.Tensor | None = None) -> bytes:
        symbols = symbols.detach().cpu().long()
        if symbols.numel() and (symbols.min() < 0 or symbols.max() >= self.num_symbols):
            raise ValueError(f"symbols must lie in [0, {self.num_symbols})")
        contexts = self._contexts(symbols, None if contexts is None else contexts.detach().cpu().long())
        return encode_symbols(symbols.numpy(), contexts.numpy(), self.tables)

    def decompress(
        self, data: bytes, shape: tuple[int, ...], contexts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inverse of :meth:`compress`: ``contexts`` must equal the encoder's."""
        ctx = torch.zeros(shape, dtype=torch.int64) if contexts is None else contexts.cpu().long()
        if tuple(ctx.shape) != tuple(shape):
            raise ValueError(f"contexts {tuple(ctx.shape)} must have shape {tuple(shape)}")
        symbols = decode_symbols(data, ctx.numpy(), self.tables)
        if symbols.size and (symbols.min() < 0 or symbols.max() >= self.num_symbols):
            raise CorruptFileError("entropy-coded stream decodes to an index outside the codebook")
        return torch.from_numpy(symbols.reshape(shape))


# --------------------------------------------------------------------------------------------------
# Coding in chunks, for contexts the decoder learns as it goes


class ChunkEncoder:
    """Range-codes chunks in order, each symbol with its own table row; escapes follow their chunk.

    Unlike :func:`encode_symbols`, the decoder need not know every table index up front: it may
    compute the indexes of chunk j from the symbols of chunks < j (e.g. a left-neighbour context).
    """

    def __init__(self, tables: TableSet):
        self.counts = tables.counts.cpu().numpy().astype(np.float64)
        self.offsets = tables.offset.cpu().numpy()
        self.lengths = tables.length.cpu().numpy()
        self.encoder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> None:
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        values = symbols - self.offsets[indexes]
        lengths = self.lengths[indexes]
        is_escape = (values < 0) | (values >= lengths)
        family = constriction.stream.model.Categorical(perfect=False)
        self.encoder.encode(
            np.where(is_escape, lengths, values).astype(np.int32), family, self.counts[indexes]
        )
        _encode_escapes(self.encoder, symbols[is_escape])

    def finish(self) -> bytes:
        return self.encoder.get_compressed().astype("<u4").tobytes()


class ChunkDecoder:
    """Inverse of :class:`ChunkEncoder`: call :meth:`decode` with each chunk's indexes, in order."""

    def __init__(self, data: bytes, tables: TableSet):
        self.decoder = _range_decoder(data)
        self.counts = tables.counts.cpu().numpy().astype(np.float64)
        self.offsets = tables.offset.cpu().numpy()
        self.lengths = tables.length.cpu().numpy()

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        indexes = _checked_indexes(indexes, len(self.lengths))
        try:
            family = constriction.stream.model.Categorical(perfect=False)
            cats = self.decoder.decode(family, self.counts[indexes]).astype(np.int64)
            lengths = self.lengths[indexes]
            out = cats + self.offsets[indexes]
            slots = np.flatnonzero(cats == lengths)
            if slots.size:
                out[slots] = _decode_escapes(self.decoder, slots.size)
        except CONSTRICTION_ERRORS as exc:
            raise _damaged(exc) from None
        return out


class LeftContextPrior(CategoricalPrior):
    """Indices on a (B, h, w) grid, each coded with the row of its left neighbour's index.

    Row 0 serves the first column; row i + 1 the symbols whose left neighbour is i. Neighbouring
    latents of natural images often pick the same or related codes, which a marginal cannot see.
    The decoder recovers one column at a time (every row of a column at once), so decoding costs
    w sequential coder calls, not h * w.
    """

    def __init__(self, num_symbols: int, logit_scale: float = 100.0):
        super().__init__(num_symbols, num_symbols + 1, logit_scale)

    @staticmethod
    def left_contexts(symbols: torch.Tensor) -> torch.Tensor:
        ctx = torch.zeros_like(symbols)
        ctx[..., 1:] = symbols[..., :-1] + 1
        return ctx

    def forward(self, symbols: torch.Tensor, contexts: torch.Tensor | None = None) -> torch.Tensor:
        symbols = symbols.detach().long()
        return super().forward(symbols, self.left_contexts(symbols))

    def compress(self, symbols: torch.Tensor, contexts: torch.Tensor | None = None) -> bytes:
        symbols = symbols.detach().cpu().long()
        if symbols.numel() and (symbols.min() < 0 or symbols.max() >= self.num_symbols):
            raise ValueError(f"symbols must lie in [0, {self.num_symbols})")
        ctx = self.left_contexts(symbols).numpy()
        coder = ChunkEncoder(self.tables)
        for j in range(symbols.shape[-1]):
            coder.encode(symbols[..., j].numpy(), ctx[..., j])
        return coder.finish()

    def decompress(
        self, data: bytes, shape: tuple[int, ...], contexts: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = np.zeros(shape, dtype=np.int64)
        decoder = ChunkDecoder(data, self.tables)
        ctx = np.zeros(shape[:-1], dtype=np.int64)
        for j in range(shape[-1]):
            column = decoder.decode(ctx)
            if column.size and (column.min() < 0 or column.max() >= self.num_symbols):
                raise CorruptFileError("entropy-coded stream decodes to an index outside the codebook")
            out[..., j] = column.reshape(shape[:-1])
            ctx = out[..., j] + 1
        return torch.from_numpy(out)
