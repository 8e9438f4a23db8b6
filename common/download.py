"""Downloading and unpacking the evaluation data sets, with pinned sha256 digests.

Why this exists: benchmark numbers are only comparable when everyone measures on the same bytes, so
every file is checked against a digest fixed in :mod:`common.download_manifest`, downloads survive
interruptions (a ``.part`` file resumed with an HTTP ``Range`` request), and nothing half-written or
unverified ever appears under its final name.

Every failure a user can cause or meet (network down, HTTP error, wrong digest, broken or hostile
archive, full disk) is raised as :class:`common.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common.errors import DataError

MIRROR_ENV = "VAEGAN_DATA_MIRROR"
CHUNK_SIZE = 1 << 16
RETRY_DELAY_S = 1.0  # doubled after every failed attempt
USER_AGENT = "vaegan-download/1.0 (+python urllib)"

# Failures of the connection itself (refused, reset, timed out, TLS, DNS): worth another attempt.
# Only network calls sit inside these handlers, so an OSError there is never a local disk problem.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)
# HTTP statuses that may succeed when asked again.
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where it lives, what it must hash to, where it goes under the data folder.

    ``extract_into`` (relative to the data folder) marks the file as an archive to unpack there; the
    archive itself is deleted afterwards unless ``fetch(..., keep_archives=True)``.
    """

    url: str
    sha256: str
    dest: str
    size: int | None = None
    extract_into: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A named set of files sharing one URL prefix, which a mirror can replace as a whole."""

    name: str
    url_prefix: str
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for f in self.files:
            if not f.url.startswith(self.url_prefix):
                raise ValueError(f"{self.name}: {f.url} does not start with {self.url_prefix}")


class _Interrupted(Exception):
    """The transfer stopped early in a way that another attempt may fix."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB archives do not need the memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_url(url: str, prefix: str, base_url: str | None) -> str:
    """``url`` with ``prefix`` replaced by ``base_url`` (a mirror holding the same relative paths)."""
    if not base_url:
        return url
    if not url.startswith(prefix):
        raise DataError(f"cannot mirror {url}: it does not start with {prefix}")
    return base_url.rstrip("/") + "/" + url[len(prefix) :].lstrip("/")


def _describe(exc: BaseException) -> str:
    """A short, single-line reason for a network or archive failure."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        text = str(reason) or type(reason).__name__
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class _Quiet:
    """Stands in for a progress bar when stderr is not a terminal (logs, tests)."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, initial: int, name: str):
    """A tqdm bar on stderr when it is a terminal and tqdm is installed, else a silent stand-in."""
    if not sys.stderr.isatty():
        return _Quiet()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return _Quiet()
    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        leave=False,
        file=sys.stderr,
    )


def _attempt(url: str, part: Path, timeout: float, size: int | None) -> None:
    """Fetch ``url`` into ``part``, resuming from its current length; raise _Interrupted when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The part file is as long as (or longer than) the resource: start over from byte 0.
            part.unlink()
            raise _Interrupted("server refused to resume (HTTP 416); starting over") from exc
        reason = f"HTTP {exc.code} {exc.reason}"
        if exc.code in _RETRYABLE_STATUS:
            raise _Interrupted(reason) from exc
        raise DataError(f"download of {url} failed: {reason}") from exc
    except ValueError as exc:  # no scheme, unknown scheme, bad port
        raise DataError(f"invalid URL {url!r}: {_describe(exc)}") from exc
    except _NETWORK_ERRORS as exc:
        raise _Interrupted(_describe(exc)) from exc

    with response:
        status = response.status
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise _Interrupted(f"server answered an unexpected range ({content_range!r}); starting over")
            mode = "ab"
        elif status == 200:
            mode, offset = "wb", 0  # no resume support (or nothing to resume): restart from scratch
        else:
            raise DataError(f"download of {url} failed: unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        expected_end = offset + int(length) if length and length.isdigit() else None
        bar = _progress(expected_end or size, offset, part.name[: -len(".part")])
        received = offset
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except _NETWORK_ERRORS as exc:
                        raise _Interrupted(_describe(exc)) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if expected_end is not None and received < expected_end:
        raise _Interrupted(f"connection closed after {received} of {expected_end} bytes")


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    timeout: float = 60,
    retries: int = 3,
    size: int | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` (resumable, verified, atomically renamed) and return ``dest``.

    Skips the transfer when ``dest`` already exists with the right digest (or exists and no digest is
    given). ``retries`` is how many more attempts follow a failed one; each resumes the ``.part`` file.
    """
    dest = Path(dest)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataError(f"invalid URL {url!r}: expected http://host/... or https://host/...")
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        if expected is None or sha256_of(dest) == expected:
            return dest
        print(f"warning: {dest} does not match its sha256; downloading it again", file=sys.stderr)
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if size is not None:
            have = part.stat().st_size if part.exists() else 0
            free = shutil.disk_usage(dest.parent).free
            if free < size - have:
                raise DataError(
                    f"not enough disk space for {dest.name}: need {size - have} bytes, "
                    f"{free} free in {dest.parent}"
                )
        if part.exists() and size is not None and part.stat().st_size > size:
            part.unlink()  # longer than the published file: cannot be a prefix of it
        complete = part.exists() and size is not None and part.stat().st_size == size
        delay = RETRY_DELAY_S
        for attempt in range(0 if complete else retries + 1):
            try:
                _attempt(url, part, timeout, size)
                break
            except _Interrupted as exc:
                if attempt == retries:
                    raise DataError(f"download of {url} failed after {retries + 1} attempts: {exc}") from None
                print(f"warning: {dest.name}: {exc}; retrying ({attempt + 1}/{retries})", file=sys.stderr)
                time.sleep(delay)
                delay *= 2
        if expected is not None:
            actual = sha256_of(part)
            if actual != expected:
                part.unlink()
                raise DataError(
                    f"checksum mismatch for {dest.name} (from {url}): expected sha256 {expected}, "
                    f"got {actual}; the download was deleted"
                )
        os.replace(part, dest)
    except DataError:
        raise
    except OSError as exc:  # local file system trouble: permissions, full disk
        raise DataError(f"cannot write {part}: {exc.strerror or exc}") from exc
    return dest


def _member_target(into: Path, name: str, archive: Path) -> Path:
    """Where archive member ``name`` lands under ``into``; refuse names that would escape it."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise DataError(f"refusing to extract {archive.name}: member {name!r} would escape {into}")
    target = (into / pure).resolve()
    if target != into and not target.is_relative_to(into):
        raise DataError(f"refusing to extract {archive.name}: member {name!r} would escape {into}")
    return target


def _extract_zip(archive: Path, into: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _member_target(into, info.filename, archive)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"refusing to extract {archive.name}: member {info.filename!r} is a symlink")
        zf.extractall(into)
        return [i.filename for i in infos if not i.is_dir()]


def _extract_tar(archive: Path, into: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            _member_target(into, m.name, archive)
            if m.issym() or m.islnk():
                link = m.linkname if m.islnk() else str(PurePosixPath(m.name).parent / m.linkname)
                _member_target(into, link, archive)
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"refusing to extract {archive.name}: member {m.name!r} is a special file")
        if hasattr(tarfile, "data_filter"):
            tf.extractall(into, members=members, filter="data")
        else:  # Python without extraction filters: the checks above already ran
            tf.extractall(into, members=members)
        return [m.name for m in members if m.isfile()]


def extract(archive: Path, into: Path) -> list[str]:
    """Unpack a .zip, .tar, .tar.gz or .tgz into ``into`` and return the names of the files in it.

    Every member is checked before anything is written: absolute paths, ``..`` components and links
    that point outside ``into`` make the whole archive refused.
    """
    archive, into = Path(archive), Path(into)
    lower = archive.name.lower()
    try:
        into.mkdir(parents=True, exist_ok=True)
        into = into.resolve()
        if lower.endswith(".zip"):
            return _extract_zip(archive, into)
        if lower.endswith((".tar", ".tar.gz", ".tgz")):
            return _extract_tar(archive, into)
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as exc:
        raise DataError(f"bad archive {archive.name}: {_describe(exc)}") from exc
    except OSError as exc:
        raise DataError(f"cannot extract {archive.name} into {into}: {exc.strerror or exc}") from exc
    raise DataError(
        f"cannot extract {archive.name}: unsupported archive type (need .zip, .tar, .tar.gz, .tgz)"
    )


def _marker(data_dir: Path, f: RemoteFile) -> Path:
    return data_dir / f.extract_into / f".{Path(f.dest).name}.extracted"


def _already_extracted(data_dir: Path, f: RemoteFile) -> bool:
    """True when a previous run unpacked this very archive and all its files are still there."""
    marker = _marker(data_dir, f)
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    root = data_dir / f.extract_into
    return info.get("sha256") == f.sha256 and all((root / m).is_file() for m in info.get("files", []))


def fetch(
    dataset: Dataset,
    data_dir: Path,
    base_url: str | None = None,
    *,
    keep_archives: bool = False,
    timeout: float = 60,
    retries: int = 3,
) -> list[Path]:
    """Download (and unpack) every file of ``dataset`` under ``data_dir``; return the paths written.

    ``base_url`` (default: the ``VAEGAN_DATA_MIRROR`` environment variable) replaces the dataset's URL
    prefix, so a mirror or a test server holding the same relative paths can stand in for the origin.
    """
    data_dir = Path(data_dir)
    if base_url is None:
        base_url = os.environ.get(MIRROR_ENV) or None
    written: list[Path] = []
    for f in dataset.files:
        url = mirror_url(f.url, dataset.url_prefix, base_url)
        if f.extract_into is not None and _already_extracted(data_dir, f):
            written.append(data_dir / f.extract_into)
            continue
        path = download(url, data_dir / f.dest, f.sha256, timeout=timeout, retries=retries, size=f.size)
        if f.extract_into is None:
            written.append(path)
            continue
        root = data_dir / f.extract_into
        names = extract(path, root)
        try:
            _marker(data_dir, f).write_text(json.dumps({"sha256": f.sha256, "files": names}))
            if not keep_archives:
                path.unlink()
        except OSError as exc:
            raise DataError(f"cannot write into {root}: {exc.strerror or exc}") from exc
        written.append(root)
    return written


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every download script shares, so they read the same on every command line."""
    parser.add_argument("--data_dir", default="data", help="folder that holds the data sets (default: data)")
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help=f"fetch from this URL prefix instead of the origin (default: ${MIRROR_ENV} if set)",
    )
