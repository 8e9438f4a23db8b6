"""Hierarchical training runs: fine-tuning under new level settings, resuming checkpoints older code wrote."""

import pytest
import torch

from common.checkpoint import read_checkpoint
from common.errors import CheckpointError
from common.training import Trainer
from hierarchical_vae_gan.model import HierarchicalVAEGAN, HierarchicalVAEGANConfig
from tests.conftest import make_image_splits, tiny_train_config

TINY = {"N": 16, "M": 8, "disc_channels": 4, "attention_heads": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 4, "val": 1}, (64, 64))


def _trainer(data_dir, out, model_kw=None, **kw):
    torch.manual_seed(0)
    cfg = tiny_train_config(data_dir, out, val_images=1, val_every=1000, lambda_adv=0.0, **kw)
    return Trainer(HierarchicalVAEGAN, HierarchicalVAEGANConfig(**(TINY | (model_kw or {}))), cfg)


def test_init_from_may_change_level_settings_but_not_the_shapes(data_dir, tmp_path, capsys):
    _trainer(data_dir, tmp_path / "a", max_steps=1).fit()
    source = tmp_path / "a" / "checkpoints" / "latest.pth"
    tuned = _trainer(
        data_dir,
        tmp_path / "b",
        {"level_betas": "1,0.5,1", "progressive_weight": 0.2},
        max_steps=2,
        init_from=str(source),
    )
    assert "progressive_weight" in capsys.readouterr().out  # the change is reported, not refused
    ref = read_checkpoint(source)["model"]
    assert all(torch.equal(v, ref[k]) for k, v in tuned.model.state_dict().items())
    tuned.fit()
    with pytest.raises(CheckpointError, match="do not fit"):
        _trainer(data_dir, tmp_path / "c", {"M": 12}, max_steps=1, init_from=str(source))


def test_resume_of_a_checkpoint_that_predates_a_setting_uses_its_default(data_dir, tmp_path):
    _trainer(data_dir, tmp_path, max_steps=1).fit()
    path = tmp_path / "checkpoints" / "latest.pth"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["progressive_weight"]  # as written before the setting existed
    torch.save(ckpt, path)
    resumed = _trainer(data_dir, tmp_path, max_steps=2, resume="auto")
    assert resumed.step == 1
    resumed.fit()
    with pytest.raises(CheckpointError, match="config differs"):  # a resumed run keeps its settings
        _trainer(data_dir, tmp_path, {"progressive_weight": 0.5}, max_steps=3, resume="auto")


def test_the_validation_loss_weighs_level_rates_as_the_training_loss_does(data_dir, tmp_path):
    """best_model.pth is chosen on the validation loss: it must be the loss the run optimises."""
    from common.losses import distortion, rate_bpp

    trainer = _trainer(data_dir, tmp_path, {"level_betas": "0,1,4"}, max_steps=1)
    stats = trainer.validate()
    x = trainer.val_set[0].unsqueeze(0)
    with torch.no_grad():
        out = trainer.model.eval()(x)
    rates = rate_bpp(out.likelihoods, 64 * 64)
    weighted = 0 * rates["l0"] + 1 * rates["l1"] + 4 * rates["l2"]
    expected = (
        trainer.cfg.lambda_d * distortion(x, out.x_hat.clamp(0, 1), "mse") + trainer.cfg.beta * weighted
    )
    assert stats["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert stats["bpp"] == pytest.approx(float(sum(rates.values())), rel=1e-5)
