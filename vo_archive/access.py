"""The one access filter: who may see proprietary products.

A product is public once its ``release_date`` has passed; before that (or for
ever, when it has none) only callers who may see proprietary data see it. The
rule is the SQL function ``archive.visible(release_date)`` (schema/versions),
which every published view applies and every service query must apply too:
services build their queries with :func:`visible` and run them on a connection
opened with :func:`caller_connection`, which tells the database who is asking.
Anonymous is the default everywhere: a query run without a scope sees public
data only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import g, has_request_context
from sqlalchemy import Connection, Engine, func, text
from sqlalchemy.sql.elements import ColumnElement

#: Roles that see proprietary data.
PROPRIETARY_ROLES = frozenset({"member", "reducer", "admin"})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is making a request."""

    name: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def sees_proprietary(self) -> bool:
        """Whether this caller may see products before their release."""
        return bool(self.roles & PROPRIETARY_ROLES)

    @property
    def anonymous(self) -> bool:
        """Whether the caller did not authenticate."""
        return self.name is None


ANONYMOUS = Caller()


def current_caller() -> Caller:
    """Return the caller of the current request (anonymous outside requests)."""
    if has_request_context():
        caller = g.get("caller")
        if isinstance(caller, Caller):
            return caller
    return ANONYMOUS


def visible(release_date: ColumnElement[object]) -> ColumnElement[bool]:
    """Return the access condition on a product's release-date column."""
    return func.archive.visible(release_date)


def set_scope(conn: Connection, caller: Caller) -> None:
    """Tell the database, for the current transaction, who is asking."""
    conn.execute(
        text("SELECT set_config('vo_archive.proprietary', :v, true)"),
        {"v": "on" if caller.sees_proprietary else "off"},
    )


@contextmanager
def caller_connection(engine: Engine, caller: Caller | None = None
                      ) -> Iterator[Connection]:
    """Open a transaction scoped to ``caller`` (the request's caller by default)."""
    with engine.begin() as conn:
        set_scope(conn, caller or current_caller())
        yield conn
