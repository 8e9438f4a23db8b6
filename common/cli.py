"""How every command line ends: project errors become one line on stderr, never a traceback.

Kept free of heavy imports so light scripts (the downloaders) can use it without loading torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import field

from common.errors import VAEGANError


def run_cli(main: Callable, argv=None, interrupted: str = "interrupted") -> int:
    """Run ``main(argv)``: a VAEGANError prints ``error: ...`` and returns 2; Ctrl-C returns 130."""
    try:
        return main(argv) or 0
    except VAEGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return 130


def option(default, help: str, choices: tuple[str, ...] = ()):
    """A config dataclass field with its command-line help and allowed values.

    The dataclass stays the one source of every flag: ``common.train_config.add_dataclass_args`` turns
    each field into ``--name`` with this help, the default shown once, and the choices.
    """
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: not when the help already says what the default means, nor when it is None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text:
            return action.help
        return super()._get_help_string(action)
