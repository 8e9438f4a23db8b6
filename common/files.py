"""Writing outputs without ever leaving a half-written file or replacing the old one on failure.

The one atomic writer: codec outputs, checkpoints, result JSONs and feature caches all go through
:func:`atomic_write`, so they share one temporary-file pattern and one file mode.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from common.errors import VAEGANError


def atomic_write(
    path: str | os.PathLike,
    data: bytes | Callable[[BinaryIO], None],
    *,
    make_parents: bool = False,
    clean_stale: bool = False,
) -> None:
    """Write ``data`` (bytes, or a function writing to the open file) to a temporary file beside
    ``path``, fsync it, rename it over ``path``, fsync the folder.

    A full disk, a missing permission or a kill at any moment leaves ``path`` as it was (absent, or
    the old file), and no temporary behind; the error is one line naming the file. The file gets
    the usual permissions (0666 less the umask), not mkstemp's private 0600. ``clean_stale`` first
    removes temporaries a killed earlier write of the same ``path`` left (for files one process
    owns, such as a run's checkpoints).
    """
    path = Path(path)
    tmp = None
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            for stale in path.parent.glob(glob.escape(path.name) + ".*.tmp"):
                try:
                    stale.unlink()
                except OSError:
                    pass
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
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


def write_json(path: str | os.PathLike, obj, *, best_effort: bool = False) -> None:
    """``obj`` as indented JSON, atomically (a killed run never leaves a half-written record that
    looks complete). ``best_effort`` (a cache): a failure is said in one line and the run goes on."""
    try:
        atomic_write(path, json.dumps(obj, indent=2).encode(), make_parents=True)
    except VAEGANError as exc:
        if not best_effort:
            raise
        print(f"{exc}; result not cached")


def json_digest(obj, length: int = 64) -> str:
    """sha256 (hex, first ``length`` digits) of ``obj`` as sorted JSON: the one key function of every
    cache (model points, codec sweeps, FID features), so equal inputs always give equal keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


def read_json(path: str | os.PathLike):
    """The JSON at ``path``, or None when it is absent, unreadable or not JSON (a cache miss)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
