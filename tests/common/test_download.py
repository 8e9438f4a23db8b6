"""common.download and scripts/download_*.py against a local HTTP server (never the real network).

The server is a threaded http.server on 127.0.0.1 that serves files from a temporary folder, honours
``Range: bytes=N-`` requests, logs every request, and can be told to cut a response short once.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common import download as dl
from common.download import Dataset, RemoteFile, download, extract, fetch
from common.download_manifest import BSDS500_SHA256, CLIC_SHA256, KODAK_SHA256
from common.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        with srv.lock:
            srv.log.append((rel, rng))
            drop = srv.drop_once.pop(rel, None)
        path = srv.root / rel
        if path.is_file():
            data = path.read_bytes()
        elif srv.default_body is not None:
            data = srv.default_body
        else:
            self.send_error(404)
            return
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and srv.ranges:
            start, status = int(match.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if srv.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if drop is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.drop_once: dict[str, int] = {}
        self.ranges = True
        self.default_body: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY_S", 0.0)
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


def serve(server: _Server, rel: str, data: bytes) -> str:
    path = server.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{server.url}/{rel}"


PAYLOAD = bytes(range(256)) * 400  # 100 KB, several read chunks


# --- download() ---------------------------------------------------------------------------------


def test_download_verifies_and_skips_second_time(server, tmp_path):
    url = serve(server, "a.bin", PAYLOAD)
    dest = tmp_path / "out" / "a.bin"
    assert download(url, dest, sha(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    assert len(server.log) == 1
    download(url, dest, sha(PAYLOAD))
    assert len(server.log) == 1  # already there with the right digest: no request


def test_download_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    url = serve(server, "a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    wrong = "0" * 64
    with pytest.raises(DataError) as info:
        download(url, dest, wrong)
    message = str(info.value)
    assert "a.bin" in message and wrong in message and sha(PAYLOAD) in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == [server.root]


def test_download_replaces_a_corrupt_existing_file(server, tmp_path):
    url = serve(server, "a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"stale")
    download(url, dest, sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_download_resumes_with_range(server, tmp_path):
    url = serve(server, "big.bin", PAYLOAD)
    server.drop_once["big.bin"] = 30_000
    dest = tmp_path / "big.bin"
    download(url, dest, sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("big.bin", None), ("big.bin", "bytes=30000-")]


def test_leftover_part_file_is_resumed(server, tmp_path):
    url = serve(server, "big.bin", PAYLOAD)
    dest = tmp_path / "big.bin"
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:12_345])
    download(url, dest, sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("big.bin", "bytes=12345-")]


def test_server_without_range_support_restarts(server, tmp_path):
    url = serve(server, "big.bin", PAYLOAD)
    server.ranges = False
    server.drop_once["big.bin"] = 30_000
    dest = tmp_path / "big.bin"
    download(url, dest, sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD  # the 200 answer overwrote the partial file, not appended to it
    assert len(server.log) == 2


def test_http_404_is_a_one_line_data_error(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "missing.bin", "0" * 64)
    assert len(server.log) == 1  # a 404 is not retried


def test_network_failure_after_retries(tmp_path):
    srv = _Server(tmp_path)  # bound but never serving, then closed: connection refused
    url = f"{srv.url}/x.bin"
    srv.server_close()
    with pytest.raises(DataError, match="after 3 attempts") as info:
        download(url, tmp_path / "x.bin", "0" * 64, retries=2, timeout=5)
    assert "\n" not in str(info.value)


# --- extract() ----------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_extraction(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"set/one.png": b"1", "set/sub/two.png": b"22"})
    names = extract(archive, tmp_path / "out")
    assert sorted(names) == ["set/one.png", "set/sub/two.png"]
    assert (tmp_path / "out/set/sub/two.png").read_bytes() == b"22"


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "set/../../escape.txt"])
def test_zip_path_traversal_is_refused(tmp_path, evil):
    archive = _zip(tmp_path / "evil.zip", {"set/ok.png": b"1", evil: b"pwned"})
    with pytest.raises(DataError, match="escape"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out/set/ok.png").exists()  # refused before anything was written


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def test_tgz_extraction_and_traversal(tmp_path):
    good = _tar(tmp_path / "good.tgz", [tarfile.TarInfo("d/x.jpg")], {"d/x.jpg": b"xyz"})
    assert extract(good, tmp_path / "out") == ["d/x.jpg"]
    assert (tmp_path / "out/d/x.jpg").read_bytes() == b"xyz"

    bad = _tar(tmp_path / "bad.tar.gz", [tarfile.TarInfo("../up.jpg")], {"../up.jpg": b"no"})
    with pytest.raises(DataError, match="escape"):
        extract(bad, tmp_path / "out2")
    assert not (tmp_path / "up.jpg").exists()

    link = tarfile.TarInfo("d/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
    with pytest.raises(DataError, match="escape"):
        extract(_tar(tmp_path / "link.tar.gz", [link], {}), tmp_path / "out3")


def test_bad_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="bad archive broken.zip"):
        extract(archive, tmp_path / "out")


# --- fetch() ------------------------------------------------------------------------------------


def test_fetch_with_mirror_env_extracts_and_skips_rerun(server, tmp_path, monkeypatch):
    archive = _zip(server.root / "pack.zip", {"SET_HR/0801.png": b"img1", "SET_HR/0802.png": b"img2"})
    digest = sha(archive.read_bytes())
    origin = "https://example.invalid/files/"
    dataset = Dataset(
        "demo", origin, (RemoteFile(origin + "pack.zip", digest, "demo/pack.zip", extract_into="demo"),)
    )
    monkeypatch.setenv(dl.MIRROR_ENV, server.url)
    data_dir = tmp_path / "data"
    assert fetch(dataset, data_dir) == [data_dir / "demo"]
    assert (data_dir / "demo/SET_HR/0802.png").read_bytes() == b"img2"
    assert not (data_dir / "demo/pack.zip").exists()  # archive removed after unpacking
    assert server.log == [("pack.zip", None)]
    fetch(dataset, data_dir)
    assert len(server.log) == 1  # unpacked files still there: nothing fetched again


def test_fetch_base_url_keeps_relative_paths(server, tmp_path):
    origin = "https://example.invalid/deep/prefix/"
    url_a = serve(server, "train/a.jpg", b"aaa")
    assert url_a.endswith("/train/a.jpg")
    dataset = Dataset("demo", origin, (RemoteFile(origin + "train/a.jpg", sha(b"aaa"), "demo/train/a.jpg"),))
    fetch(dataset, tmp_path, base_url=server.url + "/")
    assert (tmp_path / "demo/train/a.jpg").read_bytes() == b"aaa"


def test_manifest_matches_shared_copies(shared_data):
    """The hard-coded digests are those of the local copies named in shared/data/SOURCES.md."""
    for folder, table in (("kodak", KODAK_SHA256), ("clic", CLIC_SHA256), ("bsds500", BSDS500_SHA256)):
        for rel, digest in table.items():
            assert sha((shared_data / folder / rel).read_bytes()) == digest, f"{folder}/{rel}"
    assert len(KODAK_SHA256) == 24 and len(CLIC_SHA256) == 3 and len(BSDS500_SHA256) == 500


# --- scripts ------------------------------------------------------------------------------------


def run_script(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != dl.MIRROR_ENV}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "script, extra",
    [
        ("download_kodak.py", ["--only", "kodim01"]),
        ("download_clic.py", []),
        ("download_clic.py", ["--full"]),
        ("download_div2k.py", []),
        ("download_bsds500.py", ["--splits", "val"]),
    ],
)
def test_scripts_fail_cleanly_on_checksum_mismatch(server, tmp_path, script, extra):
    server.default_body = b"not the real file"
    data_dir = tmp_path / "data"
    result = run_script(script, "--data_dir", str(data_dir), "--mirror", server.url + "/x", *extra)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: checksum mismatch"), result.stderr
    assert sha(b"not the real file") in result.stderr
    assert "Traceback" not in result.stderr
    assert server.log and all(rel.startswith("x/") for rel, _ in server.log)
    assert not [p for p in data_dir.rglob("*") if p.is_file()]  # nothing left behind


def test_script_reports_http_error_without_traceback(server, tmp_path):
    result = run_script("download_bsds500.py", "--data_dir", str(tmp_path), "--mirror", server.url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "HTTP 404" in result.stderr
    assert "Traceback" not in result.stderr


def test_kodak_script_downloads_real_files_from_mirror(server, tmp_path, shared_data):
    names = ["kodim01.png", "kodim07.png", "kodim23.png"]
    for n in names:
        shutil.copy(shared_data / "kodak" / n, server.root / n)
    data_dir = tmp_path / "data"
    # Run from scripts/ to check the script finds the repo on its own.
    result = run_script(
        "download_kodak.py",
        "--data_dir",
        str(data_dir),
        "--mirror",
        server.url,
        "--only",
        "kodim01",
        "7",
        "kodim23.png",
        cwd=SCRIPTS,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (data_dir / "kodak").iterdir()) == names
    for n in names:
        assert (data_dir / "kodak" / n).read_bytes() == (shared_data / "kodak" / n).read_bytes()
    requests = len(server.log)
    again = run_script(
        "download_kodak.py",
        "--data_dir",
        str(data_dir),
        "--mirror",
        server.url,
        "--only",
        "kodim01",
        "kodim07",
        "kodim23",
    )
    assert again.returncode == 0 and len(server.log) == requests  # verified on disk, nothing fetched


def test_kodak_script_rejects_unknown_name(tmp_path):
    result = run_script("download_kodak.py", "--data_dir", str(tmp_path), "--only", "kodim99")
    assert result.returncode == 2 and result.stderr.startswith("error: unknown Kodak image")


def test_mirror_without_scheme_is_a_clean_error(tmp_path):
    result = run_script("download_clic.py", "--data_dir", str(tmp_path), "--mirror", "127.0.0.1:9/clic")
    assert result.returncode == 2 and result.stderr.startswith("error: invalid URL"), result.stderr
