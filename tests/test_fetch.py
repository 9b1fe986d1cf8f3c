"""Downloads against a local HTTP server on loopback: resume after an interrupted transfer,
checksum refusal, servers that ignore Range, and link/copy from a local folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import threading
import zipfile

import pytest

from texturepose.datasets import fetch
from texturepose.datasets.fetch import (
    ChecksumError,
    DatasetSource,
    FetchError,
    RemoteFile,
    download,
    fetch_dataset,
    link_or_copy,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` unless ``server.ignore_range``; cuts the body
    of the first ``server.cut_first`` responses after ``server.cut_at`` bytes."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_first > 0:
            srv.cut_first -= 1
            self.wfile.write(body[: srv.cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.ignore_range, srv.cut_first, srv.cut_at = {}, [], False, 0, 0
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not all-equal so misplaced bytes show
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_renames(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    out = download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    # a second call keeps the verified file without a request
    n = len(server.requests)
    download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA)
    assert len(server.requests) == n


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.cut_first, server.cut_at = 1, 300_000
    with pytest.raises(FetchError, match="rerun to resume"):
        download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA, retries=0)
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == 300_000 and not (tmp_path / "a.bin").exists()
    out = download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA, retries=0)
    assert server.requests[-1][1] == "bytes=300000-"
    assert out.read_bytes() == PAYLOAD and not part.exists()


def test_retry_resumes_within_one_call(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.cut_first, server.cut_at = 2, 100_000
    out = download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA, retries=3, backoff=0)
    assert out.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(b"garbage that must not stay in front")
    server.ignore_range = True
    out = download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256=SHA)
    assert out.read_bytes() == PAYLOAD


def test_wrong_checksum_is_refused_and_leaves_nothing(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match="sha256"):
        download(_url(server, "/a.bin"), tmp_path / "a.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ChecksumError, match="md5"):
        download(_url(server, "/a.bin"), tmp_path / "a.bin", md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        download(_url(server, "/nope.bin"), tmp_path / "nope.bin")


def _fixture_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("joints.mat", b"not really a mat file, only its presence is checked")
        z.writestr("images/im0001.jpg", b"\xff\xd8\xff")
    return buf.getvalue()


def test_fetch_dataset_downloads_and_extracts(server, tmp_path, monkeypatch):
    archive = _fixture_zip()
    server.files["/lsp_dataset.zip"] = archive
    src = DatasetSource("lsp", "http://example.invalid",
                        (RemoteFile(_url(server, "/lsp_dataset.zip"), "lsp_dataset.zip"),),
                        expect=("joints.mat", "images/im0001.jpg"), instructions="unzip it")
    monkeypatch.setitem(fetch.REGISTRY, "lsp", src)
    dest = fetch_dataset("lsp", tmp_path / "lsp", mode="download",
                         checksums={"lsp_dataset.zip": hashlib.sha256(archive).hexdigest()})
    assert (dest / "images" / "im0001.jpg").read_bytes() == b"\xff\xd8\xff"
    assert not any(p.name.endswith((".part", ".extracting")) for p in tmp_path.rglob("*"))
    with pytest.raises(ChecksumError):
        fetch_dataset("lsp", tmp_path / "lsp2", mode="download",
                      checksums={"lsp_dataset.zip": "f" * 64})
    assert not (tmp_path / "lsp2" / "joints.mat").exists()


def test_registered_dataset_says_what_to_download(tmp_path):
    with pytest.raises(FetchError) as e:
        fetch_dataset("h36m", tmp_path / "h36m", local=str(tmp_path / "absent"))
    msg = str(e.value)
    assert "vision.imar.ro" in msg and "registration" in msg and "datasets.h36m.root" in msg
    with pytest.raises(FetchError, match="registration"):
        fetch_dataset("3dpw", tmp_path / "3dpw", mode="download")


def test_link_and_copy(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "joints.mat").write_bytes(b"x")
    (src / "images" / "im0001.jpg").write_bytes(b"y")
    linked = fetch_dataset("lsp", tmp_path / "raw" / "lsp", local=str(src), mode="symlink")
    assert linked.is_symlink() and (linked / "joints.mat").read_bytes() == b"x"
    copied = link_or_copy(src, tmp_path / "raw" / "lsp_copy", mode="copy")
    assert not copied.is_symlink() and (copied / "images" / "im0001.jpg").read_bytes() == b"y"
    (src / "joints.mat").unlink()
    with pytest.raises(FetchError, match="joints.mat"):
        fetch_dataset("lsp", tmp_path / "raw" / "lsp", local=str(src))
    # a dataset placed at the destination by hand needs no local path
    placed = tmp_path / "placed" / "lsp"
    shutil.copytree(tmp_path / "raw" / "lsp_copy", placed)
    assert fetch_dataset("lsp", placed) == placed
