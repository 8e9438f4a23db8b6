"""Vector quantization with EMA codebooks, dead-code re-seeding, and residual stages.

* :class:`VectorQuantizerEMA` -- nearest-neighbour lookup in a codebook of ``num_embeddings``
  vectors; the codebook follows the exponential moving average of the vectors assigned to each code
  (van den Oord et al. 2017, appendix A.1), and codes whose average use per batch falls below
  ``dead_code_threshold`` are re-seeded with vectors from the batch.
* :class:`ResidualVQ` -- stage s quantizes what stages 0..s-1 left over (Zeghidour et al. 2021), so
  the first k stages alone already give a coarser reconstruction: rate control from one model.

Index API: ``indices(z) -> LongTensor`` and ``codes(indices) -> z_q`` round-trip exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.contract import BatchStatistics


def to_vectors(z: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B*h*w, D)."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def to_map(vectors: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(B*h*w, D) -> (B, D, h, w), the inverse of :func:`to_vectors`."""
    b, d, h, w = shape
    return vectors.view(b, h, w, d).permute(0, 3, 1, 2)


class VectorQuantizerEMA(BatchStatistics):
    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        embed = torch.randn(num_embeddings, embedding_dim)
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        # Every code starts as if used once: with the default threshold the first training batch
        # re-seeds all codes it did not use, a data-dependent initialisation.
        self.register_buffer("cluster_size", torch.ones(num_embeddings))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, h, w) index of the nearest code (squared Euclidean distance)."""
        flat = to_vectors(z.detach()).to(self.embed.dtype)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embed.t()
            + self.embed.pow(2).sum(1).unsqueeze(0)
        )
        b, _, h, w = z.shape
        return dist.argmin(dim=1).view(b, h, w)

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) -> (B, D, h, w) codebook vectors."""
        return F.embedding(indices, self.embed).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (codes, indices); in training also records the batch for the codebook's EMA,
        applied by the loop once the step is taken (:class:`common.contract.BatchStatistics`)."""
        idx = self.indices(z)
        q = self.codes(idx)
        if self.training:
            self.pending = (to_vectors(z.detach()), idx.reshape(-1))
        return q, idx

    @torch.no_grad()
    def update_from(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        """Move the codebook towards the mean of the vectors assigned to each code; re-seed dead codes."""
        d = self.decay
        counts = torch.bincount(idx, minlength=self.num_embeddings).to(self.cluster_size.dtype)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, flat.to(self.embed_avg.dtype))
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_avg.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_embeddings * self.eps) * n  # Laplace
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        self.reseed_dead_codes(flat)

    @torch.no_grad()
    def reseed_dead_codes(self, flat: torch.Tensor) -> int:
        """Move every code used less than the threshold (EMA count per batch) onto a batch vector."""
        if self.dead_code_threshold <= 0:
            return 0
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        picks = flat[torch.randint(len(flat), (n_dead,), device=flat.device)].to(self.embed.dtype)
        self.embed[dead] = picks
        self.embed_avg[dead] = picks * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold
        return n_dead


class ResidualVQ(nn.Module):
    """``num_quantizers`` stages, each quantizing the residual the previous ones left."""

    def __init__(self, num_quantizers: int, num_embeddings: int, embedding_dim: int, **vq_kwargs):
        super().__init__()
        self.stages = nn.ModuleList(
            VectorQuantizerEMA(num_embeddings, embedding_dim, **vq_kwargs) for _ in range(num_quantizers)
        )

    def forward(
        self, z: torch.Tensor, num_stages: int | None = None, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) -> (z_q with a straight-through gradient, indices (S, B, h, w), commitment).

        ``keep`` (B,) optionally limits example b to its first ``keep[b]`` stages in z_q (quantizer
        dropout); every stage still sees its residual, so codebooks and priors keep learning. The
        commitment term is the mean over stages of ``|r_s - sg(q_s)|^2``.
        """
        residual = z
        z_q = torch.zeros_like(z)
        indices, commitment = [], z.new_zeros(())
        stages = self.stages[:num_stages]
        for s, vq in enumerate(stages):
            q, idx = vq(residual)
            commitment = commitment + F.mse_loss(residual, q.detach())
            weight = 1.0 if keep is None else (keep > s).to(z.dtype).view(-1, 1, 1, 1)
            z_q = z_q + weight * q
            residual = residual - q.detach()
            indices.append(idx)
        z_q = z + (z_q - z).detach()  # straight-through estimator
        return z_q, torch.stack(indices), commitment / len(stages)

    @torch.no_grad()
    def indices(self, z: torch.Tensor, num_stages: int | None = None) -> torch.Tensor:
        """(B, D, h, w) -> (S, B, h, w): greedy residual encoding, the codebooks left unchanged."""
        residual, out = z, []
        for vq in self.stages[:num_stages]:
            idx = vq.indices(residual)
            residual = residual - vq.codes(idx)
            out.append(idx)
        return torch.stack(out)

    def codes(self, indices: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """(k, B, h, w) with k <= S -> (B, D, h, w): the sum of the first k stages' codes."""
        return sum(vq.codes(idx) for vq, idx in zip(self.stages, indices))
