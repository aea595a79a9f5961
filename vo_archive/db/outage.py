"""Whether a database error means that the database cannot answer now.

A database that is down, restarting, in recovery, refusing connections or out
of connection slots is no fault of the request: every route answers it with
the protocol's transient error (503 with ``Retry-After``, see
:func:`vo_archive.app.create_app`), and requests succeed again as soon as the
database is back. The errors reach the app in two forms: wrapped by SQLAlchemy
(a ``Connection``'s statements) or raw from psycopg2 (the connection pool
itself, and the services that run statements on the DBAPI connection, such as
:func:`vo_archive.vo.statements.run`). Both are recognised here, in one place.
"""

from __future__ import annotations

import psycopg2
from sqlalchemy import exc

from vo_archive.vo.dali.errors import TransientFault

#: Seconds a client is asked to wait before it tries again.
RETRY_AFTER_S = 30


def driver_error(error: BaseException) -> BaseException | None:
    """Return the driver's error behind ``error``, or None for a lost connection.

    None when SQLAlchemy says by itself that there is no usable connection: no
    pooled connection came free in time, the connection was invalidated, or
    an operational error came without the driver's. Otherwise the driver's
    error (SQLAlchemy's ``orig``), or ``error`` itself when there is none.
    """
    if isinstance(error, exc.TimeoutError):
        return None  # no pooled connection came free in time
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return None
        if error.orig is None:
            return None if isinstance(error, exc.OperationalError) else error
        return error.orig
    return error


def database_unavailable(error: BaseException) -> bool:
    """Return whether ``error`` says the database cannot answer now.

    Parameters
    ----------
    error
        An exception raised while talking to the database: SQLAlchemy's
        (whose ``orig`` is the driver's) or psycopg2's.
    """
    found = driver_error(error)
    if found is None:
        return True
    error = found
    # The DB-API's OperationalError: "errors related to the database's
    # operation and not necessarily under the control of the programmer"
    # (PEP 249). psycopg2 raises it, or one of its subclasses, for a refused or
    # lost connection, a server that shuts down (57P01), crashed (57P02), is
    # starting up or in recovery (57P03), has no connection slot left (53300),
    # and for a statement cancelled or rolled back by the server (57014, 40001).
    if isinstance(error, psycopg2.OperationalError):
        return True
    # a connection used after the server closed it
    return isinstance(error, psycopg2.InterfaceError) and error.pgcode is None


def unavailable_fault() -> TransientFault:
    """Return the fault every route answers when the database is unavailable."""
    return TransientFault("the archive database is unavailable; try again later",
                          retry_after=RETRY_AFTER_S)
