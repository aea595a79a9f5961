"""A private PostgreSQL cluster under the archive's home folder.

The cluster is created with the system's ``initdb`` and run with ``pg_ctl``. It
listens on 127.0.0.1 only, has no Unix socket, and accepts password (SCRAM)
logins from loopback alone. PostgreSQL refuses to run as root, so when the
archive runs as root the server runs as an unprivileged system user
(``postgres`` when it exists, otherwise a ``vo-archive`` system user is made).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# 14: the schema sets lz4 column compression (schema/versions/0001_core.py), and
# replication uses CREATE OR REPLACE TRIGGER.
MIN_PG_MAJOR = 14
SUPERUSER = "vo_archive"
DEFAULT_DBNAME = "pessto"
SERVICE_USERS = ("postgres", "vo-archive")


class ClusterError(Exception):
    """The embedded cluster cannot be created, started or reached."""


def _major_of(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ClusterError(f"cannot read the PostgreSQL version from {out!r}")
    return int(match.group(1))


def find_pg_bindir() -> Path:
    """Find the folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks on PATH first (``pg_config --bindir``, then ``initdb`` itself), then in
    the usual install folders, newest version first.

    Returns
    -------
    Path
        The binary folder of a PostgreSQL of version 13 or newer.

    Raises
    ------
    ClusterError
        If no suitable PostgreSQL installation is found.
    """
    candidates: list[Path] = []
    env_dir = os.environ.get("VO_ARCHIVE_PG_BINDIR")
    if env_dir:
        candidates.append(Path(env_dir))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)

    def version_key(p: Path) -> int:
        try:
            return int(p.parent.name)
        except ValueError:
            return 0

    for root in (Path("/usr/lib/postgresql"), Path("/usr/pgsql")):
        if root.is_dir():
            found = sorted(
                (d / "bin" for d in root.iterdir()), key=version_key, reverse=True
            )
            candidates.extend(found)
    candidates += [Path("/usr/local/pgsql/bin"), Path("/opt/homebrew/bin")]
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            try:
                if _major_of(cand) >= MIN_PG_MAJOR:
                    return cand
            except (OSError, subprocess.CalledProcessError):
                continue
    raise ClusterError(
        f"no PostgreSQL >= {MIN_PG_MAJOR} server binaries found (initdb, pg_ctl); "
        "install them (Debian: apt-get install postgresql-15) or set VO_ARCHIVE_DSN "
        "to an existing server"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    """Return the user the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         "vo-archive"],
        check=True,
    )
    return pwd.getpwnam("vo-archive")


@dataclass
class ClusterInfo:
    """What is recorded about a cluster in ``cluster.json`` beside its data."""

    port: int
    password: str
    user: str = SUPERUSER
    dbname: str = DEFAULT_DBNAME
    host: str = "127.0.0.1"

    def dsn(self, dbname: str | None = None) -> str:
        """Return a libpq URL for this cluster."""
        return (
            f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{dbname or self.dbname}"
        )


class EmbeddedCluster:
    """A PostgreSQL cluster in a folder of our own, managed with pg_ctl.

    Parameters
    ----------
    pgdata
        Data folder of the cluster; ``cluster.json`` (port, password) and the
        server log are kept beside it.
    port
        Port to use when the cluster is created; a free one if None.
    """

    def __init__(self, pgdata: Path, port: int | None = None) -> None:
        self.pgdata = pgdata.absolute()
        self.info_path = self.pgdata.parent / f"{self.pgdata.name}.cluster.json"
        self.log_path = self.pgdata.parent / f"{self.pgdata.name}.log"
        self.lock_path = self.pgdata.parent / f"{self.pgdata.name}.lock"
        self._requested_port = port
        self._bindir: Path | None = None

    # -- helpers -----------------------------------------------------------
    @property
    def bindir(self) -> Path:
        """The PostgreSQL binary folder in use."""
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    @property
    def info(self) -> ClusterInfo:
        """Port and credentials of an initialised cluster."""
        try:
            raw = json.loads(self.info_path.read_text())
        except FileNotFoundError as exc:
            raise ClusterError(f"no cluster initialised at {self.pgdata}") from exc
        return ClusterInfo(**raw)

    def dsn(self, dbname: str | None = None) -> str:
        """Return the superuser DSN of the cluster."""
        return self.info.dsn(dbname)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(
        self, args: list[str], check: bool = True,
        env_extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        user = _service_user()
        env = dict(os.environ, LC_ALL="C", LANG="C", **(env_extra or {}))
        preexec_fn: Callable[[], None] | None = None
        cwd: str | None = None
        if user is not None:
            env["HOME"] = user.pw_dir
            env["USER"] = env["LOGNAME"] = user.pw_name

            def demote() -> None:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            preexec_fn = demote
            cwd = "/"
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, check=False,
            preexec_fn=preexec_fn, cwd=cwd,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{Path(args[0]).name} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def _give_to_service_user(self, path: Path) -> None:
        user = _service_user()
        if user is None:
            return
        os.chown(path, user.pw_uid, user.pw_gid)
        # The server must be able to reach its data folder through every parent.
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise ClusterError(
                    f"{parent} is not searchable by the server's user {user.pw_name}; "
                    f"choose a VO_ARCHIVE_HOME outside it or run chmod o+x {parent}"
                )

    # -- lifecycle ---------------------------------------------------------
    @property
    def initialised(self) -> bool:
        """Whether the data folder holds a cluster."""
        return (self.pgdata / "PG_VERSION").exists() and self.info_path.exists()

    def init(self) -> None:
        """Create the cluster if it does not exist yet (idempotent)."""
        with self._locked():
            if self.initialised:
                return
            if self.pgdata.exists() and any(self.pgdata.iterdir()):
                raise ClusterError(
                    f"{self.pgdata} exists and is not an archive cluster; move it away"
                )
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self.pgdata.chmod(0o700)
            self._give_to_service_user(self.pgdata)
            password = secrets.token_urlsafe(24)
            pwfile = self.pgdata.parent / f".{self.pgdata.name}.pw"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o644)
            try:
                self._run([
                    str(self.bindir / "initdb"), "-D", str(self.pgdata),
                    "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                    "-E", "UTF8", "--locale=C", "--no-instructions",
                ])
            finally:
                pwfile.unlink(missing_ok=True)
            port = self._requested_port or free_port()
            self._write_config(port)
            self.info_path.write_text(json.dumps({"port": port, "password": password}))
            self.info_path.chmod(0o600)
        self.start()
        self._create_database()

    def _write_config(self, port: int) -> None:
        conf = self.pgdata / "postgresql.conf"
        with open(conf, "a") as fh:
            fh.write(
                "\n# --- written by vo-archive ---\nlisten_addresses = '127.0.0.1'\n"
                f"port = {port}\nunix_socket_directories = ''\nmax_connections = 200\n"
                "shared_buffers = 256MB\nwork_mem = 16MB\nmaintenance_work_mem = "
                "128MB\neffective_cache_size = 4GB\nrandom_page_cost = 1.1\n"
                "synchronous_commit = on\nmax_wal_size = 2GB\nlog_min_messages = "
                "warning\nlog_min_error_statement = panic\ntimezone = 'UTC'\n"
            )
        (self.pgdata / "pg_hba.conf").write_text(
            "# vo-archive: password logins from loopback only\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.info.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.info.dbname,)
                )
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.info.dbname}"')
        finally:
            conn.close()

    def is_running(self) -> bool:
        """Whether the cluster's postmaster is running."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        proc = self._run(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.pgdata)], check=False
        )
        return proc.returncode == 0

    def start(self) -> None:
        """Start the cluster if it is not running; wait until it accepts logins."""
        with self._locked():
            if self.is_running():
                return
            self._give_to_service_user(self.pgdata)
            if not self.log_path.exists():
                self.log_path.touch()
            user = _service_user()
            if user is not None:
                os.chown(self.log_path, user.pw_uid, user.pw_gid)
            port = self.info.port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    raise ClusterError(
                        f"port {port} on 127.0.0.1 is taken by another program; "
                        f"stop it or change 'port' in {self.pgdata}/postgresql.conf "
                        f"and {self.info_path}"
                    )
            self._run([
                str(self.bindir / "pg_ctl"), "start", "-D", str(self.pgdata),
                "-l", str(self.log_path), "-w", "-t", "120",
            ])
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.info.dsn("postgres"), connect_timeout=3).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"cluster did not accept logins: {exc}") from exc
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the cluster; return whether it was running."""
        with self._locked():
            if not self.is_running():
                return False
            self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.pgdata),
                       "-m", mode, "-w", "-t", "120"])
            return True

    # -- standbys ---------------------------------------------------------
    def allow_replication(self) -> None:
        """Let standbys on loopback stream this cluster's WAL (pg_hba.conf)."""
        hba = self.pgdata / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        if not any(line.split()[1:2] == ["replication"] for line in lines
                   if line.strip() and not line.lstrip().startswith("#")):
            with open(hba, "a") as fh:
                fh.write("host replication all 127.0.0.1/32 scram-sha-256\n")
            if self.is_running():
                self._run([str(self.bindir / "pg_ctl"), "reload", "-D",
                           str(self.pgdata)])

    def make_standby(self, pgdata: Path, port: int | None = None,
                     settings: str = "") -> EmbeddedCluster:
        """Make a hot standby of this (running) cluster in ``pgdata`` and start it.

        The copy is made with ``pg_basebackup`` and streams the primary's WAL
        from then on (``primary_conninfo``, ``standby.signal``); it listens on
        127.0.0.1 at ``port`` (a free one if None) and takes the same logins.
        There is no replication slot: a standby left stopped for long may
        need the primary's WAL that was already recycled, and is then made
        again.

        Parameters
        ----------
        pgdata
            Data folder of the standby; must not exist or be empty.
        port
            Port of the standby.
        settings
            Extra ``postgresql.conf`` lines for the standby (tests use it).

        Returns
        -------
        EmbeddedCluster
            The standby, running.

        Raises
        ------
        ClusterError
            If the folder is in use or the copy fails.
        """
        standby = EmbeddedCluster(pgdata, port)
        if standby.pgdata == self.pgdata:
            raise ClusterError("a standby needs a data folder of its own")
        if standby.pgdata.exists() and any(standby.pgdata.iterdir()):
            raise ClusterError(f"{standby.pgdata} exists and is not empty")
        if not self.is_running():
            raise ClusterError(f"the primary {self.pgdata} is not running")
        self.allow_replication()
        info = self.info
        with standby._locked():
            standby.pgdata.mkdir(parents=True, exist_ok=True)
            standby.pgdata.chmod(0o700)
            standby._give_to_service_user(standby.pgdata)
            self._run([
                str(self.bindir / "pg_basebackup"), "-D", str(standby.pgdata),
                "-h", info.host, "-p", str(info.port), "-U", info.user, "-w",
                "-X", "stream", "-c", "fast",
            ], env_extra={"PGPASSWORD": info.password})
            new_port = port or free_port()
            conninfo = (f"host={info.host} port={info.port} user={info.user} "
                        f"password={info.password} "
                        f"application_name={standby.pgdata.name}")
            with open(standby.pgdata / "postgresql.conf", "a") as fh:
                fh.write(
                    "\n# --- standby, written by vo-archive ---\n"
                    f"port = {new_port}\nhot_standby = on\n"
                    # long TAP queries are not cancelled by the primary's vacuum
                    "hot_standby_feedback = on\n"
                    f"primary_conninfo = '{conninfo}'\n{settings}\n")
            signal = standby.pgdata / "standby.signal"
            signal.touch()
            user = _service_user()
            if user is not None:
                os.chown(signal, user.pw_uid, user.pw_gid)
            standby.info_path.write_text(json.dumps(
                {"port": new_port, "password": info.password, "user": info.user,
                 "dbname": info.dbname, "host": info.host}))
            standby.info_path.chmod(0o600)
        standby.start()
        return standby

    def status(self) -> dict[str, object]:
        """Describe the cluster: where it is, whether it runs, its port."""
        info: dict[str, object] = {
            "pgdata": str(self.pgdata),
            "initialised": self.initialised,
            "running": self.is_running() if self.initialised else False,
        }
        if self.initialised:
            info["host"] = self.info.host
            info["port"] = self.info.port
            info["database"] = self.info.dbname
            info["bindir"] = str(self.bindir)
            info["log"] = str(self.log_path)
        return info
