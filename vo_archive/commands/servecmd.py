"""``vo-archive serve``: the web application under gunicorn."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from vo_archive.cli import add_command
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.engine import dispose_engines, get_engine


def register(sub: Any) -> None:
    """Add ``serve``."""
    p = add_command(sub, "serve", cmd_serve, "serve the archive's web and VO services")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=None,
                   help="web worker processes (default: cores + 1)")
    p.add_argument("--job-workers", type=int, default=1,
                   help="asynchronous-job (TAP async) worker processes to run beside "
                        "the web server; 0 when workers run elsewhere (default 1)")
    p.add_argument(
        "--debug",
        action="store_true",
        help="Flask's development server with the debugger (never in production)",
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until interrupted."""
    return serve(settings, args.host, args.port, args.workers, args.debug,
                 args.job_workers)


def start_job_workers(n: int) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` ``vo-archive worker`` processes that die with this process."""
    from vo_archive.ingest.prepare import die_with_parent

    return [
        subprocess.Popen([sys.executable, "-m", "vo_archive", "worker"],
                         preexec_fn=die_with_parent)
        for _ in range(max(0, n))
    ]


def serve(settings: Settings, host: str, port: int, workers: int | None = None,
          debug: bool = False, job_workers: int = 1) -> int:
    """Run the app under gunicorn (or Flask's server with ``debug``).

    ``job_workers`` asynchronous-job workers run beside the web server, so that
    TAP async jobs complete out of the box; they stop with it.
    """
    from vo_archive.app import create_app

    engine = get_engine(settings)
    migrate.upgrade(engine, settings.publisher_authority)
    dispose_engines()  # workers fork: each opens its own connections
    app = create_app(settings)
    job_procs = start_job_workers(job_workers)
    try:
        return _run_web(app, settings, host, port, workers, debug)
    finally:
        for proc in job_procs:
            proc.terminate()
        for proc in job_procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run_web(app: Any, settings: Settings, host: str, port: int, workers: int | None,
             debug: bool) -> int:
    if debug:
        app.run(host=host, port=port, debug=True, use_reloader=False)
        return 0
    import gunicorn.http.wsgi
    from gunicorn.app.base import BaseApplication

    from vo_archive.app import SERVER_HEADER

    # gunicorn writes its own Server header and drops the application's; name
    # the VO software there instead (taplint W_SVRV, DALI clients' diagnostics).
    gunicorn.http.wsgi.SERVER = SERVER_HEADER  # type: ignore[attr-defined]  # not in the stubs
    # Slow or stalled clients must not hold worker threads (vo_archive.web.serving);
    # the limits are configurable under [limits].
    from vo_archive.web import fetch, serving

    fetch.policy(settings)  # a bad [limits] fetch_allow stops the start, not a query
    limits = settings.extra.get("limits", {})
    serving.HEAD_TIMEOUT = float(limits.get("head_timeout", serving.HEAD_TIMEOUT))
    serving.IDLE_TIMEOUT = float(limits.get("idle_timeout", serving.IDLE_TIMEOUT))
    serving.install_text_errors()
    serving.install_single_writes()
    serving.install_close_on_unread_body()
    threads = int(limits.get("threads", 8))
    serving.BODY_READERS = int(limits.get("body_readers", max(1, threads // 2)))
    serving.BODY_TIMEOUT = float(limits.get("body_timeout", serving.BODY_TIMEOUT))
    serving.BODY_MIN_RATE = float(limits.get("body_min_rate", serving.BODY_MIN_RATE))

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers or (os.cpu_count() or 1) + 1)
            self.cfg.set("worker_class", "vo_archive.web.serving.GuardedThreadWorker")
            self.cfg.set("threads", threads)
            # the longest request line gunicorn allows: long GET queries (ADQL,
            # polygons) up to 8 KiB; longer ones must be POSTed (DALI §2.2)
            self.cfg.set("limit_request_line", 8190)
            self.cfg.set("keepalive", 30)
            self.cfg.set("timeout", 300)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", os.environ.get("VO_ARCHIVE_ACCESS_LOG"))
            self.cfg.set("proc_name", "vo-archive")
            self.cfg.set("control_socket_disable", True)
            # X-Forwarded-* are believed from [service] trusted_proxies only
            # (werkzeug's ProxyFix in create_app), never by gunicorn from any
            # local client
            self.cfg.set("forwarded_allow_ips", "")

        def load(self) -> Any:
            return app

    print(f"serving on http://{host}:{port}/", flush=True)
    Server().run()
    return 0
