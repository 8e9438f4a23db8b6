"""VQGAN's adaptive adversarial weight and a VQ-VAE-GAN run through the one training loop."""

import csv

import pytest
import torch

from common.checkpoint import load_model
from common.losses import adaptive_weight
from common.training import Trainer
from tests.conftest import make_image_splits, poison_loss, tiny_train_config
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

TINY_VQ = {"num_embeddings": 16, "embedding_dim": 8, "channels": 8, "disc_channels": 4}


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    nll = (3 * w).sum()  # gradient (3, 3): norm 3 * sqrt(2)
    g = (w * torch.tensor([0.5, 0.0])).sum()  # gradient (0.5, 0): norm 0.5
    weight = adaptive_weight(nll, g, w)
    assert float(weight) == pytest.approx(3 * 2**0.5 / (0.5 + 1e-4))
    assert not weight.requires_grad
    nll.backward()  # the graph is still usable after the weight was computed
    assert torch.equal(w.grad, torch.tensor([3.0, 3.0]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 4, "val": 2}, (72, 80))


def test_training_logs_the_adaptive_weight_and_codebook_statistics(data_dir, tmp_path):
    cfg = tiny_train_config(
        data_dir, tmp_path, max_steps=4, val_images=2, val_every=4, lambda_adv=0.1, disc_start=2
    )
    torch.manual_seed(0)
    trainer = Trainer(VQVAEGAN, VQVAEGANConfig(**TINY_VQ), cfg)
    logs = trainer.fit()
    assert logs["adv_weight"] > 0 and "g_adv" in logs and "vq_commitment" in logs
    with open(tmp_path / "logs" / "val.csv") as f:
        val = list(csv.DictReader(f))
    assert len(val) == 1
    assert 0 < float(val[0]["codebook_usage_s0"]) <= 1 and float(val[0]["perplexity_s0"]) >= 1
    assert float(val[0]["bpp_s0"]) > 0
    model = load_model(tmp_path / "checkpoints" / "best_model.pth", expect_family="vq_vae_gan")
    assert model.ready_to_code()


def test_a_skipped_step_leaves_the_codebooks_alone_and_a_taken_one_moves_them(data_dir, tmp_path):
    """The EMA codebooks learn outside the gradient: a step skipped for a non-finite loss must not
    move them either (the forward only records; the loop applies after the step is taken)."""
    from common.errors import VAEGANError

    cfg = tiny_train_config(data_dir, tmp_path, max_steps=10, max_nonfinite=2, lambda_adv=0.0)
    torch.manual_seed(0)
    trainer = Trainer(VQVAEGAN, VQVAEGANConfig(**TINY_VQ), cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer.loss
    poison_loss(trainer, lambda: True)
    with pytest.raises(VAEGANError, match="2 non-finite losses"):
        trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    trainer.loss = real
    x = torch.rand(2, 3, 64, 64)
    assert trainer.train_step(x) is not None
    assert not torch.equal(
        before["quantizer.stages.0.embed"], trainer.model.state_dict()["quantizer.stages.0.embed"]
    )
