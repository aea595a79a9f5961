"""Which database errors mean "the database cannot answer now" (503)."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import exc

from vo_archive.db.outage import database_unavailable


def _wrapped(cls: type[exc.DBAPIError], orig: BaseException,
             invalidated: bool = False) -> exc.DBAPIError:
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(("error", "unavailable"), [
    # refused, lost, shut down, crashed, starting up or in recovery, full
    (psycopg2.OperationalError("connection refused"), True),
    (psycopg2.errors.lookup("57P01")("terminating connection"), True),
    (psycopg2.errors.lookup("57P02")("crash of another backend"), True),
    (psycopg2.errors.lookup("57P03")("the database system is starting up"), True),
    (psycopg2.errors.lookup("53300")("too many clients already"), True),
    (psycopg2.InterfaceError("connection already closed"), True),
    (_wrapped(exc.OperationalError, psycopg2.OperationalError("refused")), True),
    (_wrapped(exc.InterfaceError, psycopg2.InterfaceError("closed")), True),
    (_wrapped(exc.ProgrammingError, psycopg2.ProgrammingError("x"), True), True),
    (exc.TimeoutError("QueuePool limit reached"), True),
    # the request's or the code's mistakes
    (psycopg2.errors.lookup("42703")("column x does not exist"), False),
    (psycopg2.errors.lookup("22P02")("invalid input syntax"), False),
    (_wrapped(exc.ProgrammingError, psycopg2.errors.lookup("42P01")("x")), False),
    (_wrapped(exc.DataError, psycopg2.DataError("bigint out of range")), False),
    (exc.InvalidRequestError("bad use"), False),
    (ValueError("no database here"), False),
    (OSError(28, "No space left on device"), False),
])
def test_database_unavailable(error: BaseException, unavailable: bool) -> None:
    assert database_unavailable(error) is unavailable
