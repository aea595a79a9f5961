"""Accounts for access-rights tests: one per role, each with a token and a password.

The accounts are added to the (otherwise read-only) demo archive under names no
other test uses; products are not touched.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Archive, LiveServer, start_server, stop_server
from vo_archive.web.auth import PASSWORDS, add_account, issue_token, remove_account


@dataclass(frozen=True)
class Account:
    """A test account with its secrets."""

    name: str
    roles: tuple[str, ...]
    token: str
    password: str

    @property
    def bearer(self) -> dict[str, str]:
        """Headers authenticating with the token."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> dict[str, str]:
        """Headers authenticating with HTTP Basic name:password."""
        raw = base64.b64encode(f"{self.name}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    @property
    def basic_token(self) -> dict[str, str]:
        """Headers authenticating with HTTP Basic name:token."""
        raw = base64.b64encode(f"{self.name}:{self.token}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


@dataclass(frozen=True)
class Accounts:
    """One account per role, and one without roles."""

    member: Account
    reducer: Account
    admin: Account
    outsider: Account


def make_accounts(archive: Archive) -> Accounts:
    """Create the four accounts in ``archive``."""
    tag = uuid.uuid4().hex[:6]
    made = {}
    for label, roles in (("member", ("member",)), ("reducer", ("reducer",)),
                         ("admin", ("admin",)), ("outsider", ())):
        name = f"t{tag}-{label}"
        password = f"pw-{uuid.uuid4().hex}"
        add_account(archive.engine, name, roles, password)
        made[label] = Account(name, roles, issue_token(archive.engine, name), password)
    return Accounts(**made)


def drop_accounts(archive: Archive, accounts: Accounts) -> None:
    """Remove the accounts again."""
    for a in (accounts.member, accounts.reducer, accounts.admin, accounts.outsider):
        remove_account(archive.engine, a.name)
    PASSWORDS.clear()


@pytest.fixture(scope="session")
def accounts(demo_archive: Archive) -> Iterator[Accounts]:
    """Accounts of every role in the demo archive."""
    made = make_accounts(demo_archive)
    yield made
    drop_accounts(demo_archive, made)


# -- an archive with a whole proprietary run, served ------------------------------

@dataclass(frozen=True)
class Hidden:
    """What an anonymous caller must not learn about, and what it may see."""

    run_names: frozenset[str]
    product_ids: frozenset[int]
    filenames: frozenset[str]
    sha256s: frozenset[str]
    target_names: frozenset[str]
    visible_ids: frozenset[int]
    visible_run: str
    hidden_run: str
    total: int
    dids: frozenset[str] = frozenset()
    positions: tuple[tuple[float, float, str], ...] = ()
    visible_dids: frozenset[str] = frozenset()
    visible_positions: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class AccessSite:
    """A served archive with proprietary data, its accounts and its secrets."""

    server: LiveServer
    accounts: Accounts
    hidden: Hidden


def hidden_facts(archive: Archive) -> Hidden:
    """Collect the not-yet-public products, runs and targets of ``archive``."""
    from sqlalchemy import text

    with archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.product_id, v.filename, v.sha256 FROM archive.product p "
            "JOIN archive.version v USING (product_id) "
            "WHERE NOT coalesce(p.release_date <= now(), false)")).all()
        runs = set(conn.execute(text(
            "SELECT r.name FROM archive.run r WHERE NOT EXISTS (SELECT 1 FROM "
            "archive.product p WHERE p.run_id = r.run_id AND p.release_date <= now())"
        )).scalars())
        targets = set(conn.execute(text(
            "SELECT t.name FROM archive.target t WHERE NOT EXISTS (SELECT 1 FROM "
            "archive.product p WHERE p.target_id = t.target_id "
            "AND p.release_date <= now())")).scalars())
        visible = set(conn.execute(text(
            "SELECT product_id FROM archive.product WHERE release_date <= now()"
        )).scalars())
        visible_run = conn.execute(text(
            "SELECT r.name FROM archive.run r WHERE EXISTS (SELECT 1 FROM "
            "archive.product p WHERE p.run_id = r.run_id AND p.release_date <= now() "
            "AND p.level = 'final') ORDER BY r.run_id LIMIT 1")).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM archive.product")).scalar_one()
        dids = conn.execute(text(
            "SELECT archive.publisher_did(p.product_id, v.version_no), v.ra, v.dec, "
            "coalesce(p.release_date <= now(), false) FROM archive.product p "
            "JOIN archive.version v USING (product_id)")).all()
    return Hidden(frozenset(runs), frozenset(r[0] for r in rows),
                  frozenset(r[1] for r in rows), frozenset(r[2] for r in rows),
                  frozenset(targets), frozenset(visible), visible_run,
                  sorted(runs)[0] if runs else "", total,
                  frozenset(d for d, _, _, pub in dids if not pub),
                  tuple((ra, dec, d) for d, ra, dec, pub in dids
                        if not pub and ra is not None),
                  frozenset(d for d, _, _, pub in dids if pub),
                  tuple((ra, dec) for _, ra, dec, pub in dids
                        if pub and ra is not None))


@pytest.fixture(scope="session")
def access_site(make_archive: Callable[..., Archive], demo_files: list[Path]
                ) -> Iterator[AccessSite]:
    """Demo products of two runs, one of them proprietary as a whole, served.

    Intermediates are never public (the default policy); the first run's
    products are released only in 300 days, so its name, its targets and its
    files are proprietary too.
    """
    from sqlalchemy import text

    archive = make_archive()
    archive.ingest(demo_files[:40] + demo_files[160:200])
    with archive.engine.begin() as conn:
        conn.execute(text(
            "UPDATE archive.product SET release_date = now() + interval '300 days' "
            "WHERE run_id = (SELECT min(run_id) FROM archive.run) "
            "AND release_date IS NOT NULL"))
    hidden = hidden_facts(archive)
    assert hidden.run_names and hidden.target_names and hidden.visible_ids
    made = make_accounts(archive)
    server = start_server(archive)
    from tests.tap_fixtures import start_worker, stop_worker

    worker = start_worker(archive)
    yield AccessSite(server, made, hidden)
    stop_worker(worker)
    stop_server(server.process)
