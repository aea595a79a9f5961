"""Large streamed downloads: a client that goes away, and a corrupted stored file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from tests.conftest import Archive, LiveServer, start_server, stop_server
from vo_archive.retrieval.bigdemo import generate_large

RUN = "bigrun"


@pytest.fixture(scope="module")
def big(make_archive: Callable[..., Archive],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An archive with one run of 4 images of 16 MB (public), served by gunicorn."""
    src = tmp_path_factory.mktemp("big")
    generate_large(src, 64 << 20)
    archive = make_archive()
    archive.ingest([src], run_name=RUN)
    server = start_server(archive)
    yield server
    stop_server(server.process)


def worker_pids(server: LiveServer) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.process.pid)],
                         capture_output=True, text=True, check=False).stdout.split()
    masters = [int(p) for p in out]
    pids = []
    for m in masters:  # vo-archive serve -> gunicorn master (same pid) -> workers
        kids = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(m)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        pids += [int(k) for k in kids]
    return masters + pids


def open_storage_files(server: LiveServer) -> list[str]:
    storage = str(server.archive.settings.storage_dir)
    found = []
    for pid in worker_pids(server):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(storage):
                found.append(target)
    return found


def test_client_disconnect_ends_the_stream(big: LiveServer) -> None:
    host, port = big.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /runs/{RUN}/download HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length > 64 << 20
    # the client stops reading: the worker blocks, holding one stored file open
    opened = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not opened:
        opened = open_storage_files(big)
        time.sleep(0.2)
    assert opened, "the stream never opened a stored file"
    sock.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and open_storage_files(big):
        time.sleep(0.2)
    assert open_storage_files(big) == []
    assert big.get("/runs?format=json").status_code == 200


def test_fetch_detects_a_corrupted_file(big: LiveServer, tmp_path: Path) -> None:
    archive = big.archive
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    good = subprocess.run([sys.executable, "-m", "vo_archive", "fetch", "--quiet",
                           f"{big.url}/runs/{RUN}/download?format=zip", "-o",
                           str(tmp_path / "good.zip")], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert good.returncode == 0, good.stderr
    with archive.engine.connect() as conn:
        key, name = conn.execute(text(
            "SELECT storage_key, filename FROM archive.version LIMIT 1")).one()
    path = archive.settings.storage_dir / key
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the checksum can tell
    path.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "-m", "vo_archive", "fetch", "--quiet",
                          f"{big.url}/runs/{RUN}/download", "-o",
                          str(tmp_path / "bad.tar")], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert bad.returncode == 1
    assert f"checksum mismatch: {name}" in bad.stderr
    assert requests.get(f"{big.url}/runs/{RUN}?format=json", timeout=30).json()[
        "count"] == 4
