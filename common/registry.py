"""The one map from family name to its code in files and its model class.

Everything else (checkpoints, the codec, evaluation, comparison) goes through here, so no other
module branches on the family.
"""

from __future__ import annotations

import importlib

# name -> (code written in every compressed file, "module:Class")
FAMILIES: dict[str, tuple[int, str]] = {
    "beta_vae_gan": (1, "beta_vae_gan.model:BetaVAEGAN"),
    "vq_vae_gan": (2, "vq_vae_gan.model:VQVAEGAN"),
    "hierarchical_vae_gan": (3, "hierarchical_vae_gan.model:HierarchicalVAEGAN"),
}


def family_code(name: str) -> int:
    return FAMILIES[name][0]


def family_name(code: int) -> str | None:
    for name, (c, _) in FAMILIES.items():
        if c == code:
            return name
    return None


def model_class(name: str):
    from common.errors import CheckpointError

    if name not in FAMILIES:
        raise CheckpointError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    module, cls = FAMILIES[name][1].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"model family {name!r} is not available in this version ({exc})") from None
