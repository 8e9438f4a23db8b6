"""Writing outputs without ever leaving a half-written file or replacing the old one on failure."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from common.errors import VAEGANError


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A full disk, a missing permission or a kill at any moment leaves ``path`` as it was (absent, or
    the old file), and no temporary behind; the error is one line naming the file.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise VAEGANError(f"disk full writing {path}; it was left as it was") from None
        raise VAEGANError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
