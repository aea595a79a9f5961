"""Database connections: the configured server or the embedded cluster."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine

from vo_archive.config import Settings
from vo_archive.db.cluster import EmbeddedCluster

_engines: dict[tuple[str, int, bool, int | None], Engine] = {}
#: DSN resolved for each embedded cluster (by data folder) in this process:
#: resolving runs pg_ctl, which must not happen on every request.
_resolved: dict[tuple[str, int], str] = {}
_lock = threading.Lock()


def cluster_for(settings: Settings) -> EmbeddedCluster:
    """Return the embedded cluster of these settings (it may not exist yet)."""
    return EmbeddedCluster(settings.pgdata)


def resolve_dsn(settings: Settings, start: bool = True) -> str:
    """Return the DSN to use, creating and starting the embedded cluster on demand.

    Parameters
    ----------
    settings
        Archive settings; when ``settings.dsn`` is set it is returned unchanged.
    start
        Whether to initialise and start the embedded cluster if it is not running.
    """
    if settings.dsn:
        return settings.dsn
    cluster = cluster_for(settings)
    if start:
        if not cluster.initialised:
            cluster.init()
        else:
            cluster.start()
    return cluster.dsn()


def get_engine(settings: Settings, pre_ping: bool = True) -> Engine:
    """Return the process's engine for ``settings``, one per DSN and process.

    ``pre_ping=False`` gives a second pool whose connections are not tested
    (one round trip) at each checkout: for callers that detect a dropped
    connection themselves and try again (:func:`vo_archive.vo.statements.run`).

    Engines are not shared across ``fork()``: a worker that forked gets its own.
    The embedded cluster is checked (and started) once per process, not on
    every call: web requests call this each time.
    """
    return engine_for(primary_dsn(settings), pre_ping)


def primary_dsn(settings: Settings) -> str:
    """Return the primary's DSN, starting the embedded cluster once per process."""
    if settings.dsn:
        return settings.dsn
    where = (str(settings.pgdata.absolute()), os.getpid())
    with _lock:
        known = _resolved.get(where)
    dsn = known or resolve_dsn(settings)
    with _lock:
        _resolved[where] = dsn
    return dsn


def engine_for(dsn: str, pre_ping: bool = True, connect_timeout: int | None = None
               ) -> Engine:
    """Return the process's engine for one server's DSN (a primary or a standby).

    Parameters
    ----------
    dsn
        A libpq URL or ``key=value`` string.
    pre_ping
        Whether pooled connections are tested at checkout (see :func:`get_engine`).
    connect_timeout
        Seconds a new connection may take (libpq ``connect_timeout``); the
        standbys' engines set it, so that a node that stopped answering is given
        up quickly and the read goes elsewhere. None: libpq's default.
    """
    key = (dsn, os.getpid(), pre_ping, connect_timeout)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            url = dsn if "://" in dsn else f"postgresql+psycopg2:///?{dsn}"
            url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
            url = url.replace("postgres://", "postgresql+psycopg2://", 1)
            args: dict[str, object] = {
                "application_name": "vo-archive",
                "keepalives": 1,
                "keepalives_idle": 30,
            }
            if connect_timeout is not None:
                args["connect_timeout"] = connect_timeout
            engine = create_engine(
                url,
                pool_size=5,
                max_overflow=10,
                pool_pre_ping=pre_ping,
                connect_args=args,
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _resolved.clear()
