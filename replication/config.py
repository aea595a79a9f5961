"""Replication configuration: the streams, read from a TOML file.

Example (see ``replication.example.toml``)::

    [defaults]
    io_timeout = 30.0

    [[stream]]
    name = "marshall"
    origin = "qub"
    master = "postgresql://repl:...@qub.example:5432/marshall"
    slave = "postgresql://repl:...@ia2.example:5432/marshall_backup"
    tables = ["marshall.transients", "marshall.classifications"]

Every key of ``[defaults]`` may be overridden in a ``[[stream]]``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2.extensions


class ConfigError(Exception):
    """A replication configuration that cannot be used."""


_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """One master → slave stream of a set of tables.

    Attributes
    ----------
    name
        Stream name; also names the PgQ queue (``repl_<name>``) and consumer.
    master, slave
        libpq DSNs (URL or key=value) of a superuser on each side; the
        replicator needs ``session_replication_role`` on the slave.
    tables
        Schema-qualified tables, each with a primary key, same definition on
        both sides.
    origin
        Site name stored in every event (anchors P8).
    """

    name: str
    master: str
    slave: str
    tables: tuple[str, ...]
    origin: str = "master"
    fetch_size: int = 2000
    io_timeout: float = 30.0
    connect_timeout: int = 10
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    poll_interval: float = 0.1
    ticker_max_count: int = 5000
    ticker_max_lag: float = 0.25
    ticker_idle_period: float = 5.0
    rotation_period: float = 7200.0
    maint_interval: float = 30.0
    journal: bool = False

    @property
    def queue(self) -> str:
        """The PgQ queue of this stream."""
        return f"repl_{self.name}"

    @property
    def consumer(self) -> str:
        """The PgQ consumer name of this stream's replicator."""
        return f"replicator_{self.name}"


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    """All streams of one replication configuration file."""

    streams: tuple[StreamConfig, ...]

    def stream(self, name: str) -> StreamConfig:
        """Return the stream called ``name``.

        Raises
        ------
        ConfigError
            If there is no such stream.
        """
        for s in self.streams:
            if s.name == name:
                return s
        raise ConfigError(f"no stream named {name!r}; have {self.names()}")

    def names(self) -> list[str]:
        """Return the stream names in file order."""
        return [s.name for s in self.streams]

    def select(self, names: list[str] | None) -> list[StreamConfig]:
        """Return the named streams, or all of them when ``names`` is empty."""
        if not names:
            return list(self.streams)
        return [self.stream(n) for n in names]


_FIELDS = {f.name: f for f in dataclasses.fields(StreamConfig)}
_REQUIRED = ("name", "master", "slave", "tables")


def database_identity(dsn: str) -> tuple[str, str, str]:
    """Return ``(host, port, dbname)`` of a DSN, to recognise one database twice."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise ConfigError(f"invalid DSN: {exc}") from None
    return (parts.get("host", "localhost"), parts.get("port", "5432"),
            parts.get("dbname", parts.get("user", "")))


def _stream_from(raw: dict[str, Any], defaults: dict[str, Any]) -> StreamConfig:
    merged = {**defaults, **raw}
    unknown = sorted(set(merged) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown stream setting(s): {', '.join(unknown)}")
    missing = [k for k in _REQUIRED if k not in merged]
    if missing:
        raise ConfigError(f"stream {raw.get('name', '?')!r} lacks {', '.join(missing)}")
    name = merged["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"stream name {name!r} must match {_NAME_RE.pattern}")
    tables = merged["tables"]
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"stream {name!r}: tables must be a non-empty list")
    for t in tables:
        if not isinstance(t, str) or not _TABLE_RE.match(t):
            raise ConfigError(f"stream {name!r}: table {t!r} must be schema.table")
    if len(set(tables)) != len(tables):
        raise ConfigError(f"stream {name!r}: a table is listed twice")
    merged["tables"] = tuple(tables)
    for key, value in list(merged.items()):
        ftype = _FIELDS[key].type
        if ftype == "float" and isinstance(value, int):
            merged[key] = float(value)
        elif ftype in ("int", "float") and not isinstance(value, (int, float)):
            raise ConfigError(f"stream {name!r}: {key} must be a number")
        elif ftype == "str" and not isinstance(value, str):
            raise ConfigError(f"stream {name!r}: {key} must be a string")
        elif ftype == "bool" and not isinstance(value, bool):
            raise ConfigError(f"stream {name!r}: {key} must be true or false")
    for db in ("master", "slave"):
        database_identity(merged[db])
    return StreamConfig(**merged)


def check_topology(streams: list[StreamConfig]) -> None:
    """Refuse layouts that would loop or give a table two masters.

    Each table on each database is either a master (captured) or a slave
    (applied to) of exactly one stream (anchors P8, T11).

    Raises
    ------
    ConfigError
        If a stream name repeats, master and slave are the same database, or a
        table on one database is the target of two streams or both a source
        and a target.
    """
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise ConfigError("stream names must be unique")
    role: dict[tuple[tuple[str, str, str], str], tuple[str, str]] = {}
    for s in streams:
        mdb, sdb = database_identity(s.master), database_identity(s.slave)
        if mdb == sdb:
            raise ConfigError(f"stream {s.name!r}: master and slave are one database")
        for t in s.tables:
            for db, kind in ((mdb, "master"), (sdb, "slave")):
                seen = role.get((db, t))
                if seen is None:
                    role[(db, t)] = (s.name, kind)
                    continue
                other, other_kind = seen
                if kind == "master" and other_kind == "master":
                    continue  # one master table may feed several slaves
                raise ConfigError(
                    f"table {t} on {db[0]}:{db[1]}/{db[2]} is {other_kind} in stream "
                    f"{other!r} and {kind} in stream {s.name!r}: that would loop or "
                    "give the table two masters"
                )


def parse_config(data: dict[str, Any]) -> ReplicationConfig:
    """Build a configuration from parsed TOML.

    Raises
    ------
    ConfigError
        If the content is invalid (see `check_topology`).
    """
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError("[defaults] must be a table")
    for key in ("name", "master", "slave", "tables"):
        if key in defaults:
            raise ConfigError(f"{key} cannot be a default")
    raw_streams = data.get("stream", [])
    if not isinstance(raw_streams, list) or not raw_streams:
        raise ConfigError("no [[stream]] defined")
    unknown = sorted(set(data) - {"defaults", "stream"})
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    streams = [_stream_from(r, defaults) for r in raw_streams]
    check_topology(streams)
    return ReplicationConfig(streams=tuple(streams))


def load_config(path: Path) -> ReplicationConfig:
    """Read and check a replication TOML file.

    Parameters
    ----------
    path
        The TOML file.

    Returns
    -------
    ReplicationConfig
        The checked configuration.

    Raises
    ------
    ConfigError
        If the file cannot be read or is invalid.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_config(data)
