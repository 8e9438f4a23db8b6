"""Untrusted checkpoints: loading never runs code from the file; damage and mismatches are named."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from common.checkpoint import load_model, read_checkpoint
from common.errors import CheckpointError


class _Payload:
    """Unpickling this would create the file named in ``marker`` (it must never happen)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_its_payload_does_not_run(tiny_beta_path, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = torch.load(tiny_beta_path, weights_only=True)
    evil_zip = tmp_path / "evil.pth"
    torch.save(ckpt | {"extra": _Payload(str(marker))}, evil_zip)  # the torch zip format
    evil_raw = tmp_path / "evil_raw.pth"
    with open(evil_raw, "wb") as f:  # a bare pickle, as older torch versions wrote
        pickle.dump({"family": "beta_vae_gan", "model": _Payload(str(marker))}, f)
    for path in (evil_zip, evil_raw):
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            read_checkpoint(path)
        with pytest.raises(CheckpointError):
            load_model(path)
    assert not marker.exists()
    with open(evil_raw, "rb") as f:  # the payload is real: plain pickle does run it
        pickle.load(f)
    assert marker.exists()


def test_truncated_and_garbage_checkpoints_are_checkpoint_errors(tiny_beta_path, tmp_path):
    data = tiny_beta_path.read_bytes()
    for name, content in {
        "empty.pth": b"",
        "half.pth": data[: len(data) // 2],
        "tail_cut.pth": data[:-100],
        "garbage.pth": np.random.default_rng(0).bytes(4096),
        "pickle_garbage.pth": b"\x80\x02" + np.random.default_rng(1).bytes(4096),
        "text.pth": b"not a checkpoint\n",
    }.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_model(tmp_path / name)


def _resave(tiny_beta_path, tmp_path, edit) -> str:
    ckpt = torch.load(tiny_beta_path, weights_only=True)
    edit(ckpt)
    path = tmp_path / "edited.pth"
    torch.save(ckpt, path)
    return path


def test_mismatches_name_what_differs(tiny_beta_path, tmp_path):
    def tamper(c):
        c["model"]["g_s.6.bias"] += 1e-3

    with pytest.raises(CheckpointError, match=r"altered \(stored identity [0-9a-f]{16}, actual"):
        load_model(_resave(tiny_beta_path, tmp_path, tamper))

    def wrong_width(c):
        c["config"]["M"] = 32

    with pytest.raises(
        CheckpointError,
        match=r"do not fit the beta_vae_gan config \((size mismatch|Missing key|Unexpected key).*(g_a|g_s|h_a|h_s)",
    ):
        load_model(_resave(tiny_beta_path, tmp_path, wrong_width))

    def unknown_field(c):
        c["config"]["heads"] = 4

    with pytest.raises(CheckpointError, match="unknown fields: heads"):
        load_model(_resave(tiny_beta_path, tmp_path, unknown_field))

    def unknown_family(c):
        c["family"] = "diffusion"

    with pytest.raises(CheckpointError, match="unknown model family 'diffusion'"):
        load_model(_resave(tiny_beta_path, tmp_path, unknown_family))

    def not_ours(c):
        c.clear()
        c["weights"] = torch.zeros(3)

    with pytest.raises(CheckpointError, match="not a VAE-GAN checkpoint"):
        load_model(_resave(tiny_beta_path, tmp_path, not_ours))

    def malformed(c):
        c["family"] = ["beta_vae_gan"]

    with pytest.raises(CheckpointError, match="malformed family/model"):
        load_model(_resave(tiny_beta_path, tmp_path, malformed))

    def no_config(c):
        del c["config"]

    with pytest.raises(CheckpointError, match="no model config"):
        load_model(_resave(tiny_beta_path, tmp_path, no_config))

    def bad_config_value(c):
        c["config"]["N"] = "wide"

    with pytest.raises(CheckpointError, match="does not build a model"):
        load_model(_resave(tiny_beta_path, tmp_path, bad_config_value))

    with pytest.raises(CheckpointError, match="holds a beta_vae_gan model, but a vq_vae_gan model"):
        load_model(tiny_beta_path, expect_family="vq_vae_gan")


def test_folder_or_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="folder"):
        read_checkpoint(tmp_path)


def test_checkpoint_with_non_finite_weights_is_refused_at_load(tiny_beta_path, tmp_path):
    """NaN or inf weights would write files nothing can decode: refused when loading, identity recomputed."""
    from common.checkpoint import model_id

    for value in (float("nan"), float("inf")):

        def poison(c, value=value):
            c["model"]["g_s.6.bias"][0] = value
            c["model_id"] = torch.tensor(list(model_id(c["model"])), dtype=torch.uint8)  # a consistent file

        with pytest.raises(CheckpointError, match=r"1 tensors hold NaN or inf values \(first: g_s.6.bias\)"):
            load_model(_resave(tiny_beta_path, tmp_path, poison))


def test_config_asking_for_huge_widths_is_refused_before_building(tiny_beta_path, tmp_path, monkeypatch):
    from common import checkpoint

    def huge(c):
        c["config"]["N"] = 10**6

    built = []
    monkeypatch.setattr(checkpoint, "build_model", lambda *a: built.append(a))
    with pytest.raises(CheckpointError, match=r"config asks for N=1000000, larger than any tensor"):
        load_model(_resave(tiny_beta_path, tmp_path, huge))
    assert built == []
