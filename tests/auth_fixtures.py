"""Accounts for access-rights tests: one per role, each with a token and a password.

The accounts are added to the (otherwise read-only) demo archive under names no
other test uses; products are not touched.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import Archive
from vo_archive.auth import PASSWORDS, add_account, issue_token, remove_account


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
