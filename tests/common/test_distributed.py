"""Data-parallel training: two gloo processes equal one process with the same global batch, their
weights and EMA codebooks stay identical, and a run resumes on another number of processes."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.checkpoint import read_checkpoint
from common.distributed import split_batch
from common.errors import VAEGANError
from common.train_config import TrainConfig
from common.training import Trainer
from tests.conftest import make_image_splits, tiny_train_config
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

# No noise in the forward pass (quantizer dropout off), so one process and two can be compared
# weight for weight; EMA updates, dead-code re-seeding (all codes unused at step 1 are re-seeded),
# the adaptive adversarial weight and feature matching all run.
TINY_VQ = {
    "num_embeddings": 16,
    "embedding_dim": 8,
    "channels": 8,
    "disc_channels": 4,
    "quantizer_dropout": 0.0,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 8, "val": 1}, (64, 72))


def _cfg(data_dir, out, **kw) -> TrainConfig:
    base = dict(
        batch_size=4,  # global
        lr=1e-3,
        warmup_steps=1,
        min_lr_ratio=1.0,
        val_images=1,
        lambda_adv=0.1,
        disc_start=0,
        lambda_perceptual=0.5,
        perceptual="feature_matching",
        seed=3,
        device="cpu",
    )
    return tiny_train_config(data_dir, out, **(base | kw))


def _run(data_dir, out, **kw) -> dict:
    torch.manual_seed(0)
    trainer = Trainer(VQVAEGAN, VQVAEGANConfig(**TINY_VQ), _cfg(data_dir, out, **kw))
    start = trainer.step
    trainer.fit()
    return {
        "model": trainer.model.state_dict(),
        "disc": trainer.disc.state_dict(),
        "start": start,
        "step": trainer.step,
    }


def _worker(rank: int, world: int, store: str, data_dir, tmp_path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fresh = _run(data_dir, tmp_path / "two", max_steps=2)
        torch.save(fresh, tmp_path / f"fresh{rank}.pt")
        resumed = _run(data_dir, tmp_path / "one", max_steps=2, resume="auto")  # written by one process
        torch.save(resumed, tmp_path / f"resumed{rank}.pt")
    finally:
        dist.destroy_process_group()


def _same(a: dict, b: dict) -> bool:
    """Equal weights and buffers; coding tables are left out (rank 0 alone builds them, when it saves)."""
    keys = [k for k in a if ".tables." not in k]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in keys)


def _close(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ beyond float reduction-order noise."""
    keys = [k for k in a if ".tables." not in k]
    return [k for k in keys if not torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5)]


def test_two_processes_equal_one_and_resume_across_world_sizes(data_dir, tmp_path):
    ref2 = _run(data_dir, tmp_path / "ref", max_steps=2)
    ref3 = _run(data_dir, tmp_path / "ref", max_steps=3, resume="auto")
    _run(data_dir, tmp_path / "one", max_steps=1)  # to be continued on two processes

    mp.spawn(_worker, args=(2, str(tmp_path / "store"), data_dir, tmp_path), nprocs=2, join=True)

    for name in ("fresh", "resumed"):
        r0, r1 = (torch.load(tmp_path / f"{name}{r}.pt", weights_only=True) for r in (0, 1))
        assert r0["step"] == r1["step"] == 2
        for part in ("model", "disc"):  # every weight and buffer (codebooks included) identical on both ranks
            assert _same(r0[part], r1[part]), (name, part)
            assert not _close(r0[part], ref2[part]), (name, part, _close(r0[part], ref2[part]))
    assert torch.load(tmp_path / "resumed0.pt", weights_only=True)["start"] == 1  # 1 -> 2 processes

    ckpt = read_checkpoint(tmp_path / "two" / "checkpoints" / "latest.pth")
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and len(ckpt["rng_torch_ranks"]) == 2
    assert ckpt["train_config"]["batch_size"] == 4

    cont = _run(data_dir, tmp_path / "two", max_steps=3, resume="auto")  # 2 -> 1 process
    assert (cont["start"], cont["step"]) == (2, 3)
    for part in ("model", "disc"):
        assert not _close(cont[part], ref3[part]), (part, _close(cont[part], ref3[part]))
    # and the comparison can fail: one more step is far from the reference
    assert _close(cont["model"], ref2["model"])


def test_global_batch_must_split_evenly():
    assert split_batch(16, 4) == 4
    with pytest.raises(VAEGANError, match="divisible"):
        split_batch(6, 4)


def test_single_process_run_does_not_touch_torch_distributed(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    trainer = Trainer(VQVAEGAN, VQVAEGANConfig(**TINY_VQ), _cfg(data_dir, tmp_path, max_steps=1))
    assert not trainer.dist.enabled and trainer.g_forward is trainer.model and not dist.is_initialized()
    assert os.environ.get("RANK") is None


def test_bf16_autocast_and_channels_last_keep_the_entropy_models_in_float32(data_dir, tmp_path):
    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
    from tests.conftest import TINY_BETA

    cfg = _cfg(data_dir, tmp_path, max_steps=2, amp="bf16", channels_last=True, lambda_perceptual=0.0)
    torch.manual_seed(0)
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), cfg)
    seen = {}  # dtypes in training steps (validation runs in float32)

    def record(name):
        def hook(module, inputs, out):
            if module.training:
                seen[name] = (inputs[0].dtype, out[1].dtype) if name == "gc" else out.dtype

        return hook

    trainer.model.gaussian_conditional.register_forward_hook(record("gc"))
    trainer.model.g_s.register_forward_hook(record("x_hat"))
    logs = trainer.fit()
    assert seen == {"gc": (torch.bfloat16, torch.float32), "x_hat": torch.bfloat16}  # y in, likelihood out
    assert trainer.model.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in logs.items() if k != "lr") and logs["bpp"] > 0
    assert read_checkpoint(tmp_path / "checkpoints" / "latest.pth")["step"] == 2
