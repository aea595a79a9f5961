"""nginx in front of web nodes, for the tests: the repository's own configuration.

:func:`start_nginx` runs Debian's nginx (``nginx-light``) with
``deploy/nginx/pessto-archive.conf`` (the file the README shows), its upstream
servers and ``listen`` replaced by the test's loopback addresses, in a prefix
folder of its own (pid, logs, temporary files), in the foreground
(``daemon off``), and as an unprivileged user when the tests run as root.
``bench/scale.py`` starts its proxies with it too.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from vo_archive.db.cluster import free_port

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "pessto-archive.conf"
_SERVER_LINE = re.compile(r"^ *server \d+\.\d+\.\d+\.\d+:\d+ (?P<opts>[^;]*);\n",
                          re.MULTILINE)

_LOG_LINE = re.compile(r"(\S+) (\d+) \S+ (\S+) \|([^|]*)\|[^|]*\|")

MAIN = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format nodes '$msec $status $request_method $uri |$upstream_addr|'
                     '$upstream_status|';
    access_log {prefix}/access.log nodes;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""


def nginx_binary() -> str | None:
    """Return the nginx binary (Debian's is in /usr/sbin), or None."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_or_skip() -> str:
    """Return the nginx binary; skip (fail where CI requires it) without one."""
    import pytest

    found = nginx_binary()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (dev.sh installs nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


def site_config(upstreams: list[str], port: int) -> str:
    """Return the repository's site configuration for loopback ``upstreams``."""
    text = SITE.read_text()
    found = list(_SERVER_LINE.finditer(text))
    if not found:
        raise AssertionError(f"{SITE}: no upstream server lines")
    opts = found[0]["opts"]
    lines = "".join(f"    server {u} {opts};\n" for u in upstreams)
    text = text[:found[0].start()] + lines + text[found[-1].end():]
    text, n = re.subn(r"^( *)listen 80;", rf"\1listen 127.0.0.1:{port};", text,
                      flags=re.MULTILINE)
    if n != 1:
        raise AssertionError(f"{SITE}: expected one 'listen 80;'")
    return text


@dataclass
class Nginx:
    """A running nginx on loopback."""

    url: str
    process: subprocess.Popen[bytes]
    prefix: Path

    def stop(self) -> None:
        """Stop nginx (QUIT: graceful) and remove its folder."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def served(self) -> list[tuple[float, int, str, list[str]]]:
        """Return the access log: (time, status, path, upstream nodes tried)."""
        path = self.prefix / "access.log"
        out = []
        for line in path.read_text().splitlines():
            m = _LOG_LINE.fullmatch(line)
            if m:
                nodes = [a for a in re.split(r",\s*|\s+:\s+", m[4]) if a]
                out.append((float(m[1]), int(m[2]), m[3], nodes))
        return out

    def log(self) -> str:
        """Return the error log (for failure messages)."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _drop_to(user: pwd.struct_passwd) -> None:
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def start_nginx(upstreams: list[str]) -> Nginx:
    """Start nginx on a free loopback port in front of ``upstreams`` (host:port)."""
    binary = nginx_or_skip()
    prefix = Path(tempfile.mkdtemp(prefix="vo-archive-nginx-"))
    port = free_port()
    (prefix / "site.conf").write_text(site_config(upstreams, port))
    (prefix / "nginx.conf").write_text(MAIN.format(prefix=prefix))
    preexec = None
    if os.geteuid() == 0:
        # nginx as the unprivileged user it would run its workers as
        nobody = pwd.getpwnam("nobody")
        for path in [prefix, *prefix.iterdir()]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)

        def preexec() -> None:
            _drop_to(nobody)
    log = open(prefix / "stdout.log", "wb")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
         "-e", str(prefix / "error.log")],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
    url = f"http://127.0.0.1:{port}"
    server = Nginx(url, proc, prefix)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = (prefix / "stdout.log").read_text(errors="replace")
            text = out + server.log()
            shutil.rmtree(prefix, ignore_errors=True)
            raise RuntimeError(f"nginx exited: {text}")
        try:
            requests.get(url + "/nginx-start-probe", timeout=2)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("nginx did not start in 20 s")
