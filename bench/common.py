"""What the benchmarks share: scratch folders, demo archives, servers' processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from vo_archive.config import Settings
from vo_archive.db.engine import cluster_for

#: The repository the benchmarks belong to (its code, not an installed copy, is
#: what they measure, also in the servers they start).
ROOT = Path(__file__).resolve().parents[1]


def scratch_dir(prefix: str) -> Path:
    """Make a scratch folder that the embedded cluster's server user can enter.

    ``tempfile.mkdtemp`` makes a private folder (0700); run as root, the embedded
    cluster's server runs as an unprivileged user (postgres) that must reach its
    data folder through it, so the folder is opened to everyone's searching and
    reading (0755), as the test suite does.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment of a subprocess that runs this repository's code."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


def prepare_archive(home: Path, products: int) -> Settings:
    """Make (once) an archive of ``products`` demo products under ``home``."""
    settings = Settings(home=home)
    marker = home / f"bench-{products}.done"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "vo_archive", "demo", "--products",
                        str(products), "--no-serve"], check=True,
                       env=child_env(VO_ARCHIVE_HOME=str(home)))
        marker.write_text("ok\n")
    return settings


def stop_embedded(home: Path) -> None:
    """Stop the embedded cluster of the archive under ``home``, if it runs."""
    cluster_for(Settings(home=home)).stop()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the second field (the name) may hold spaces and brackets
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def web_workers(master: int) -> list[int]:
    """Return the pids of the gunicorn web workers of ``vo-archive serve`` ``master``.

    A web worker is forked from the master without a new program, so it keeps the
    master's command line (or, with ``setproctitle`` installed, takes the title
    ``gunicorn: worker [vo-archive]``); the asynchronous-job workers the server
    starts beside it run ``vo_archive worker``, and are not counted.
    """
    own = _cmdline(master)
    return [pid for pid in _children(master)
            if (line := _cmdline(pid)) and (line == own
                                            or line[0].startswith("gunicorn: worker"))]


def start_serve(home: Path, workers: int | None, *args: str, log: Path | None = None,
                timeout: float = 120.0, **env: str) -> tuple[subprocess.Popen[bytes],
                                                             int]:
    """Start ``vo-archive serve`` of the archive under ``home`` on a free port.

    ``workers`` web workers (None: ``vo-archive serve``'s default). Returns the
    process (in a session of its own: stop it with :func:`stop_serve`) and its
    port, once it answers.
    """
    import http.client
    import time

    from vo_archive.db.cluster import free_port

    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "vo_archive", "serve", "--port", str(port),
         *(["--workers", str(workers)] if workers else []), *args],
        env=child_env(VO_ARCHIVE_HOME=str(home), **env), stdout=out,
        stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/scs/availability")
            conn.getresponse().read()
            conn.close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_serve(proc)
                raise SystemExit(f"vo-archive serve did not start (log: {log})"
                                 ) from None
            time.sleep(0.2)


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started by :func:`start_serve` (its job workers with it)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
