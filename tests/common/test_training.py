"""The training loop: loss falls, resume is exact, checkpoints carry their config and load safely."""

import csv
from dataclasses import asdict

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import load_model, read_checkpoint
from common.cli import run_cli
from common.errors import CheckpointError, DataError
from common.training import Trainer, lr_at
from tests.conftest import TINY_BETA, make_image_splits, tiny_train_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 8, "val": 2}, (80, 96))


def _cfg(data_dir, out, **kw):
    base = dict(lr=1e-3, warmup_steps=1, min_lr_ratio=1.0, val_images=2, lambda_adv=0.1, disc_start=2, seed=3)
    return tiny_train_config(data_dir, out, **(base | kw))


def _trainer(cfg):
    torch.manual_seed(0)
    return Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), cfg)


def test_loss_falls(data_dir, tmp_path):
    trainer = _trainer(_cfg(data_dir, tmp_path, max_steps=150, lambda_adv=0.0, lr=3e-3, val_every=1000))
    trainer.fit()
    with open(tmp_path / "logs" / "train.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 150
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_resume_continues_exactly(data_dir, tmp_path):
    straight = _trainer(_cfg(data_dir, tmp_path / "a", max_steps=6, val_every=3))
    straight.fit()
    first = _trainer(_cfg(data_dir, tmp_path / "b", max_steps=3, val_every=3))
    first.fit()
    resumed = _trainer(_cfg(data_dir, tmp_path / "b", max_steps=6, val_every=3, resume="auto"))
    assert resumed.step == 3
    resumed.fit()
    for name in ("model", "disc"):
        a = getattr(straight, name).state_dict()
        b = getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_checkpoints_hold_config_and_load_for_coding(data_dir, tmp_path):
    trainer = _trainer(_cfg(data_dir, tmp_path, max_steps=2, val_every=2))
    trainer.fit()
    for name in ("latest.pth", "best_model.pth"):
        ckpt = read_checkpoint(tmp_path / "checkpoints" / name)
        assert (
            ckpt["config"] == asdict(BetaVAEGANConfig(**TINY_BETA)) and ckpt["train_config"]["max_steps"] == 2
        )
        assert ckpt["step"] == 2
    model = load_model(tmp_path / "checkpoints" / "best_model.pth")
    assert model.ready_to_code() and not model.training
    assert (tmp_path / "logs" / "train.csv").read_text().count("\n") == 3
    assert list((tmp_path / "samples").glob("*.png"))


def test_resume_with_other_model_flags_is_refused(data_dir, tmp_path):
    _trainer(_cfg(data_dir, tmp_path, max_steps=1, val_every=1)).fit()
    with pytest.raises(CheckpointError, match="config differs"):
        Trainer(
            BetaVAEGAN,
            BetaVAEGANConfig(N=8, M=8, disc_channels=8),
            _cfg(data_dir, tmp_path, max_steps=2, resume="auto"),
        )


def test_tampered_checkpoint_is_refused(data_dir, tmp_path):
    _trainer(_cfg(data_dir, tmp_path, max_steps=1, val_every=1)).fit()
    path = tmp_path / "checkpoints" / "latest.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["g_s.6.bias"] += 1e-3
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="altered"):
        load_model(path)


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        _trainer(_cfg(tmp_path, tmp_path / "out", max_steps=1))


def test_lr_schedule_warms_up_then_decays():
    assert lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_csv_log_keeps_columns_that_appear_later(tmp_path):
    from common.run_folder import CsvLog

    log = CsvLog(tmp_path / "t.csv")
    log.write({"step": 1, "loss": 2.0})
    log.write({"step": 2, "loss": 1.5, "d_loss": 0.7})
    reopened = CsvLog(tmp_path / "t.csv")
    reopened.write({"step": 3, "loss": 1.0, "d_loss": 0.6})
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["d_loss"] for r in rows] == ["", "0.7", "0.6"]
    assert [r["step"] for r in rows] == ["1", "2", "3"]


def test_weight_average_is_validated_resumed_exactly_and_exported(data_dir, tmp_path):
    """--weight_average: an EMA of the trained weights, scored beside them, in every checkpoint."""
    import importlib.util

    from tests.conftest import ROOT

    kw = dict(max_steps=6, val_every=3, lambda_adv=0.0, weight_average=0.5)
    straight = _trainer(_cfg(data_dir, tmp_path / "a", **kw))
    straight.fit()
    with open(tmp_path / "a" / "logs" / "val.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["ema_loss"]) > 0 and r["ema_loss"] != r["loss"] for r in rows)
    params = dict(straight.model.named_parameters())
    assert any(not torch.equal(v, params[n]) for n, v in straight.ema.values.items())
    first = _trainer(_cfg(data_dir, tmp_path / "b", **(kw | {"max_steps": 3})))
    first.fit()
    resumed = _trainer(_cfg(data_dir, tmp_path / "b", **(kw | {"resume": "auto"})))
    resumed.fit()
    assert all(torch.equal(straight.ema.values[n], resumed.ema.values[n]) for n in straight.ema.values)

    spec = importlib.util.spec_from_file_location("export_model", ROOT / "scripts" / "export_model.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    ckpt = tmp_path / "a" / "checkpoints" / "latest.pth"
    assert export.main([str(ckpt), str(tmp_path / "ema.pth"), "--ema"]) == 0
    shipped = dict(load_model(tmp_path / "ema.pth").named_parameters())
    assert all(torch.equal(shipped[n], v) for n, v in straight.ema.values.items())
    with pytest.raises(ValueError, match="weight_average"):
        _cfg(data_dir, tmp_path / "c", weight_average=1.0)
    plain = _trainer(_cfg(data_dir, tmp_path / "e", max_steps=1, lambda_adv=0.0))
    plain.fit()
    no_average = tmp_path / "e" / "checkpoints" / "latest.pth"
    assert run_cli(export.main, [str(no_average), str(tmp_path / "x.pth"), "--ema"]) == 2  # one line, no file
    assert not (tmp_path / "x.pth").exists()
    # a fine-tuning run's average starts from the weights it starts from, not from a fresh model
    tuned = _trainer(_cfg(data_dir, tmp_path / "d", **(kw | {"init_from": str(ckpt)})))
    params = dict(tuned.model.named_parameters())
    assert all(torch.equal(v, params[n]) for n, v in tuned.ema.values.items())
    assert torch.equal(params["g_a.0.weight"], dict(straight.model.named_parameters())["g_a.0.weight"])
