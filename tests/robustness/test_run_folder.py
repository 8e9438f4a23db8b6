"""A training run never overwrites another run's checkpoints, and two runs cannot share a folder."""

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import read_checkpoint
from common.errors import VAEGANError
from common.run_folder import RunLock
from common.training import Trainer
from tests.conftest import TINY_BETA, make_image_splits, tiny_train_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_splits(tmp_path_factory.mktemp("data"), {"train": 4, "val": 1}, (64, 64))


def _trainer(data_dir, out, **kw):
    torch.manual_seed(0)
    cfg = tiny_train_config(data_dir, out, **(dict(max_steps=2, val_every=2, lambda_adv=0.0) | kw))
    return Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA), cfg)


def test_a_folder_holding_a_run_needs_resume_or_overwrite(data_dir, tmp_path):
    out = tmp_path / "run"
    first = _trainer(data_dir, out)
    first.fit()
    first.close()
    best = (out / "checkpoints" / "best_model.pth").read_bytes()
    with pytest.raises(VAEGANError, match="holds a run.*--resume.*--overwrite") as err:
        _trainer(data_dir, out, seed=1)
    assert "\n" not in str(err.value)
    assert (out / "checkpoints" / "best_model.pth").read_bytes() == best  # untouched

    resumed = _trainer(data_dir, out, resume="auto", max_steps=4)
    resumed.fit()
    resumed.close()
    assert read_checkpoint(out / "checkpoints" / "latest.pth")["step"] == 4

    again = _trainer(data_dir, out, overwrite=True, seed=1)
    again.fit()
    again.close()
    kept = list(out.glob("replaced-*"))
    assert len(kept) == 1 and read_checkpoint(kept[0] / "checkpoints" / "latest.pth")["step"] == 4
    assert read_checkpoint(out / "checkpoints" / "latest.pth")["step"] == 2  # the new run
    # the logs went aside with the earlier run: the new run's log holds its own steps only, once each
    old_steps = [row.split(",")[0] for row in (kept[0] / "logs" / "train.csv").read_text().splitlines()[1:]]
    new_steps = [row.split(",")[0] for row in (out / "logs" / "train.csv").read_text().splitlines()[1:]]
    assert old_steps == ["1", "2", "3", "4"] and new_steps == ["1", "2"]


def test_two_runs_cannot_share_a_folder(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = RunLock(out)  # another run, in the middle of training
    trainer = _trainer(data_dir, out)
    with pytest.raises(VAEGANError, match="another run is training in .* wait for it to end"):
        trainer.fit()
    assert not (out / "checkpoints").exists()
    holder.release()
    trainer.fit()  # the folder is free again
    trainer.close()
    assert (out / "checkpoints" / "latest.pth").is_file()


def test_unreadable_training_images_are_found_up_front_or_skipped(tmp_path, capsys):
    """A file whose header is bad is skipped at start; one that fails only when decoded is skipped then."""
    import io

    from PIL import Image

    from common.datasets import CropDataset
    from common.errors import DataError
    from tests.conftest import random_image

    folder = make_image_splits(tmp_path / "data", {"train": 3}, (64, 64)) / "train"
    (folder / "garbage.png").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(random_image(np.random.default_rng(0), 64, 64)).save(buf, "JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])  # header ok, pixels cut
    data = CropDataset([folder], 32)
    assert "garbage.png" in capsys.readouterr().err and len(data) == 4
    crops = [data[(i, 0, 0)] for i in range(len(data))]  # cut.jpg is replaced by the next image
    assert all(c.shape == (3, 32, 32) for c in crops)
    err = capsys.readouterr().err
    assert err.count("cut.jpg") == 1 and "skipped from now on" in err
    data[(0, 1, 0)]
    assert "cut.jpg" not in capsys.readouterr().err  # said once
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no readable image"):
        CropDataset([tmp_path / "empty"], 32)


@pytest.mark.parametrize("patch, hint", [(8, "try 64"), (100, "try 128")])
def test_a_patch_size_the_model_cannot_take_is_one_line(data_dir, tmp_path, patch, hint):
    with pytest.raises(VAEGANError, match=f"--patch_size {patch} does not fit .* multiple of 64 px.*{hint}"):
        _trainer(data_dir, tmp_path / "run", patch_size=patch)


def test_missing_training_data_names_the_download_script(tmp_path):
    from common.datasets import resolve_set
    from common.errors import DataError

    with pytest.raises(
        DataError, match=r"'bsds500/train' not found .*python scripts/download_bsds500.py --data_dir"
    ):
        resolve_set(tmp_path, "bsds500/train")
    with pytest.raises(DataError, match=r"download_kodak.py"):
        resolve_set(tmp_path, "kodak")
    with pytest.raises(DataError) as err:
        resolve_set(tmp_path, "my_photos")
    assert "download" not in str(err.value)
