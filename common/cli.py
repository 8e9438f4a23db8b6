"""How every command line ends: project errors become one line on stderr, never a traceback.

Kept free of heavy imports so light scripts (the downloaders) can use it without loading torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

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
