"""Tests for neurobias.data.download.fetch against a local HTTP server (no internet).

The server (127.0.0.1, port 0) supports Range requests and can be told to truncate its next
responses (send Content-Length N, close after N/2 bytes), to fail (HTTP 503) or to ignore ranges.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neurobias.data import download
from neurobias.data.download import ChecksumError, DownloadError, fetch, require_checksum

KEY = "datasets.cifar10.manual_path"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
            fail = srv.fail_next > 0
            srv.fail_next -= fail
            truncate = srv.truncate_next > 0
            srv.truncate_next -= truncate
        if fail:
            self.send_error(503, "Service Unavailable (test)")
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and not srv.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.requests, srv.files = [], {}
    srv.fail_next = srv.truncate_next = 0
    srv.ignore_range = False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def payload(server):
    data = os.urandom(300_000)
    server.files["/cifar-10-python.tar.gz"] = data
    return data, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _fetch(server, dest, **kw):
    kw.setdefault("manual_key", KEY)
    kw.setdefault("retries", 0)
    kw.setdefault("timeout", 5)
    kw.setdefault("progress", False)
    return fetch(server.url("/cifar-10-python.tar.gz"), dest, **kw)


def _leftovers(dest: Path):
    return sorted(p.name for p in dest.parent.iterdir() if p.name != dest.name)


def test_download_verifies_and_places_file(server, payload, tmp_path):
    data, md5, sha = payload
    dest = tmp_path / "dl" / "cifar-10-python.tar.gz"
    assert _fetch(server, dest, md5=md5) == dest
    assert dest.read_bytes() == data
    assert _leftovers(dest) == []
    # sha256 works as well, and both together
    dest2 = tmp_path / "b.tar.gz"
    _fetch(server, dest2, sha256=sha.upper(), md5=md5)
    assert dest2.read_bytes() == data


def test_existing_good_file_is_not_downloaded_again(server, payload, tmp_path):
    data, md5, _ = payload
    dest = tmp_path / "c.tar.gz"
    _fetch(server, dest, md5=md5)
    n = len(server.requests)
    assert _fetch(server, dest, md5=md5) == dest
    assert len(server.requests) == n
    # a corrupted file at dest is set aside (not silently deleted) and replaced by a verified download
    dest.write_bytes(b"garbage")
    _fetch(server, dest, md5=md5)
    assert dest.read_bytes() == data and len(server.requests) == n + 1
    assert _leftovers(dest) == ["c.tar.gz.rejected"]


def test_wrong_checksum_names_everything_and_leaves_nothing(server, payload, tmp_path):
    data, md5, _ = payload
    dest = tmp_path / "d.tar.gz"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as e:
        _fetch(server, dest, md5=wrong)
    msg = str(e.value)
    for needle in (server.url("/cifar-10-python.tar.gz"), str(dest), wrong, md5, KEY):
        assert needle in msg
    assert not dest.exists()
    assert _leftovers(dest) == []  # the .part is deleted: it cannot be resumed into a valid file


def test_truncated_transfer_is_reported_then_resumed(server, payload, tmp_path):
    data, md5, _ = payload
    dest = tmp_path / "e.tar.gz"
    server.truncate_next = 1
    with pytest.raises(DownloadError) as e:
        _fetch(server, dest, md5=md5)
    msg = str(e.value)
    assert "truncated" in msg and str(len(data)) in msg and str(len(data) // 2) in msg
    assert KEY in msg and str(dest) in msg
    assert not dest.exists()
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == len(data) // 2  # kept for resuming

    _fetch(server, dest, md5=md5)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1]["range"] == f"bytes={len(data) // 2}-"


def test_retry_inside_one_call_resumes(server, payload, tmp_path, monkeypatch):
    data, md5, _ = payload
    monkeypatch.setattr(download, "_backoff", lambda attempt: None)
    server.truncate_next = 1
    server.fail_next = 0
    dest = tmp_path / "f.tar.gz"
    _fetch(server, dest, md5=md5, retries=2)
    assert dest.read_bytes() == data
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(data) // 2}-"]


def test_server_without_range_support_restarts_from_zero(server, payload, tmp_path):
    data, md5, _ = payload
    dest = tmp_path / "g.tar.gz"
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(b"x" * 1000)  # stale bytes that must not survive
    server.ignore_range = True
    _fetch(server, dest, md5=md5)
    assert dest.read_bytes() == data and server.requests[-1]["range"] == "bytes=1000-"


def test_complete_part_file_with_416_is_accepted(server, payload, tmp_path):
    data, md5, _ = payload
    dest = tmp_path / "h.tar.gz"
    dest.with_name(dest.name + ".part").write_bytes(data)
    _fetch(server, dest, md5=md5)
    assert dest.read_bytes() == data


def test_http_error_and_no_network_explain_manual_placement(server, payload, tmp_path):
    _, md5, _ = payload
    server.fail_next = 1
    with pytest.raises(DownloadError, match="503") as e:
        _fetch(server, tmp_path / "i.tar.gz", md5=md5)
    assert KEY in str(e.value)

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    dest = tmp_path / "j.tar.gz"
    with pytest.raises(DownloadError) as e:
        fetch(url, dest, md5=md5, manual_key=KEY, retries=0, timeout=2, progress=False)
    msg = str(e.value)
    assert url in msg and str(dest) in msg and KEY in msg and "network" in msg
    assert "manually downloaded" in msg
    assert not dest.exists()


def test_manual_path_good_and_bad(server, payload, tmp_path):
    data, md5, _ = payload
    manual = tmp_path / "my_download.tar.gz"
    manual.write_bytes(data)
    dest = tmp_path / "out" / "k.tar.gz"
    assert _fetch(server, dest, md5=md5, manual_path=manual) == dest
    assert dest.read_bytes() == data and server.requests == []  # no network used
    assert manual.exists()

    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(data[:-1])
    dest2 = tmp_path / "out" / "l.tar.gz"
    with pytest.raises(ChecksumError) as e:
        _fetch(server, dest2, md5=md5, manual_path=bad)
    msg = str(e.value)
    assert str(bad) in msg and md5 in msg and hashlib.md5(data[:-1]).hexdigest() in msg and KEY in msg
    assert not dest2.exists() and server.requests == []
    assert sorted(p.name for p in dest2.parent.iterdir()) == ["k.tar.gz"]

    # a configured manual file that does not exist: fall back to the download
    dest3 = tmp_path / "out" / "m.tar.gz"
    _fetch(server, dest3, md5=md5, manual_path=tmp_path / "missing.tar.gz")
    assert dest3.read_bytes() == data


def test_missing_checksum_is_refused(server, payload, tmp_path):
    url = server.url("/cifar-10-python.tar.gz")
    with pytest.raises(DownloadError, match=re.escape(f"no pinned checksum for {url}")):
        fetch(url, tmp_path / "n.tar.gz", progress=False)
    with pytest.raises(DownloadError, match="no pinned checksum"):
        require_checksum(url)
    with pytest.raises(DownloadError, match="hexadecimal"):
        require_checksum(url, md5="abc")
    assert server.requests == [] and list(tmp_path.iterdir()) == []
