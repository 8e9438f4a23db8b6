"""Data-parallel training from the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

One process per device; every rank runs the same loop on its slice of the global batch, DDP averages
the gradients, and only rank 0 writes (logs, TensorBoard, samples, checkpoints). Two kinds of state
change outside the gradients and are kept identical here:

* statistics a module computes from the batch (the EMA codebooks of ``vq_vae_gan.quantizer``): their
  inputs are all-gathered first (:func:`batch_gather`), so every rank applies the update
  one process would apply to the whole global batch;
* buffers moved by per-rank randomness (dead-code re-seeding draws batch vectors at random): rank 0's
  buffers are broadcast after each step (:func:`broadcast_buffers`). Integer coding tables are left
  out: they are derived from the weights by ``update()`` and only rank 0 builds them, when it saves.

Control messages (the Ctrl-C flag, barriers, RNG states) go through a gloo group on the CPU, so they
never wait on the GPU stream.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from common.errors import VAEGANError


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: object = None  # gloo process group for CPU-side messages
    owns_group: bool = False  # this process called init_process_group, so it destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control)

    def any_true(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (gloo, CPU: no device sync)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def close(self, wait: bool = True) -> None:
        """Leave the group this process joined; ``wait=False`` after an error (the others may be
        waiting in another collective; torchrun stops them when this rank fails)."""
        if self.owns_group and dist.is_initialized():
            if wait:
                self.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def setup(device_flag: str) -> tuple[DistEnv, torch.device]:
    """Join the process group ``torchrun`` describes (or one already set up); pick this rank's device.

    gloo on CPU, NCCL on CUDA (``--device cuda`` or ``auto`` with a GPU): rank r uses cuda:LOCAL_RANK.
    Without ``WORLD_SIZE > 1`` and no existing group this is a one-process run.
    """
    use_cuda = torch.cuda.is_available() if device_flag == "auto" else device_flag.startswith("cuda")
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if not dist.is_initialized() and env_world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            if local >= torch.cuda.device_count():
                raise VAEGANError(
                    f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs: "
                    "use --nproc_per_node <= the number of GPUs"
                )
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        owns = True
    if not dist.is_initialized():
        device = torch.device(("cuda" if use_cuda else "cpu") if device_flag == "auto" else device_flag)
        return DistEnv(), device
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return DistEnv(rank, world, local, control, owns), device


def wrap(module: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``module`` under DistributedDataParallel when data-parallel, else itself.

    Buffers are synchronised after each step instead (:func:`broadcast_buffers`), so that rank 0's
    coding tables, rebuilt when it saves, never travel."""
    if not env.enabled:
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    newer = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
    kw = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
    kw["device_ids"] = [device.index] if device.type == "cuda" else None
    return DDP(module, **kw)


def split_batch(global_batch: int, world_size: int) -> int:
    """Per-rank batch: ``--batch_size`` is global, so N ranks see what one process with it sees."""
    if global_batch % world_size:
        raise VAEGANError(
            f"--batch_size {global_batch} (the global batch) must be divisible by the {world_size} processes"
        )
    return global_batch // world_size


def batch_gather(env: DistEnv):
    """The ``gather`` for :meth:`CompressionModel.apply_batch_statistics`: concatenation over ranks.

    Ranks hold equal slices of the global batch in rank order, so concatenating them gives exactly
    the vectors (and order) one process would have. None when not distributed.
    """
    return _all_gather_cat if env.enabled else None


def _all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous()
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return torch.cat(parts)


def _coding_table_buffers(model: nn.Module) -> set[int]:
    from common.entropy import TableSet

    return {id(b) for m in model.modules() if isinstance(m, TableSet) for b in m.buffers(recurse=False)}


def broadcast_buffers(model: nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (coding tables excepted) to every rank, coalesced per dtype."""
    if not env.enabled:
        return
    skip = _coding_table_buffers(model)
    groups: dict[tuple, list[torch.Tensor]] = {}
    for b in model.buffers():
        if id(b) not in skip and b.numel():
            groups.setdefault((b.dtype, b.device), []).append(b)
    for tensors in groups.values():
        flat = _flatten_dense_tensors(tensors)
        dist.broadcast(flat, src=0)
        for t, synced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
            t.copy_(synced)


def all_reduce_mean(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean over ranks (a new tensor; autograd does not flow through it)."""
    if not env.enabled:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / env.world_size


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of rank r > 0's noise stream (rank 0 keeps the one-process stream)."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) & 0x7FFF_FFFF_FFFF


def rng_states(env: DistEnv, device: torch.device) -> dict:
    """The random streams a checkpoint keeps for an exact resume: rank 0's (the one-process stream)
    and, under torchrun, every rank's. Collective: every rank calls it at the same step."""
    cuda = device.type == "cuda"
    ranks = env.gather_objects((torch.get_rng_state(), torch.cuda.get_rng_state(device) if cuda else None))
    state = {
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if env.enabled:
        state["rng_torch_ranks"] = [r[0] for r in ranks]
        state["rng_cuda_ranks"] = [r[1] for r in ranks] if cuda else []
    return state


def restore_rng(ckpt: dict, env: DistEnv, device: torch.device, seed: int, step: int) -> None:
    """Rank r restores its own stream if the checkpoint has one; otherwise rank 0 keeps rank 0's
    (the one-process stream) and the others start a fresh stream keyed by (seed, rank, step)."""
    rank, cuda = env.rank, device.type == "cuda"
    per_rank = ckpt.get("rng_torch_ranks") or []
    if len(per_rank) == env.world_size and env.enabled:
        torch.set_rng_state(per_rank[rank])
        cuda_ranks = ckpt.get("rng_cuda_ranks") or []
        if cuda and len(cuda_ranks) == env.world_size and cuda_ranks[rank] is not None:
            torch.cuda.set_rng_state(cuda_ranks[rank], device)
        return
    if rank == 0:
        torch.set_rng_state(ckpt["rng_torch"])
        if cuda and ckpt.get("rng_cuda"):
            states = ckpt["rng_cuda"]
            if env.enabled:
                torch.cuda.set_rng_state(states[0], device)
            elif len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
    else:
        torch.manual_seed(rank_seed(seed, rank, step))
