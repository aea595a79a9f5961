"""Login tokens and browser sessions in the database: the 0011_sessions migration,
expiry, revocation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import text

from tests.conftest import Archive, create_database
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.web.auth import (
    add_account,
    caller_for_session,
    caller_for_token,
    close_session,
    issue_login_token,
    issue_token,
    open_session,
    revoke_login_token,
    revoke_tokens,
    token_hash,
)


def test_upgrade_keeps_api_tokens(pg_cluster: EmbeddedCluster, tmp_path: Path
                                  ) -> None:
    dsn = create_database(pg_cluster, "migrate_sessions")
    engine = get_engine(Settings(home=tmp_path, dsn=dsn))
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS archive_meta"))
        command.upgrade(migrate.alembic_config(conn), "0005_auth")
    with engine.begin() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
            "'archive' AND table_name = 'token' AND column_name = 'kind'")
        ).scalar_one() == 0
    add_account(engine, "old", ["member"], "pw-old")
    with engine.begin() as conn:  # a token made before the upgrade
        conn.execute(text(
            "INSERT INTO archive.token (token_hash, account_id) SELECT :h, account_id "
            "FROM archive.account WHERE name = 'old'"), {"h": token_hash("pva_old")})
    # 0011_sessions, and 0016_login_failure on top of it
    assert "0016_login_failure" in migrate.upgrade(engine)
    assert migrate.pending_revisions(engine) == []
    with engine.connect() as conn:
        kind = conn.execute(text("SELECT kind FROM archive.token")).scalar_one()
        assert kind == "api"
        assert conn.execute(text("SELECT count(*) FROM archive.session")
                            ).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM archive.login_failure")
                            ).scalar_one() == 0
    caller = caller_for_token(engine, "pva_old")
    assert caller is not None and caller.name == "old"
    permit = open_session(engine, "old")
    assert caller_for_session(engine, permit.value) == caller


def test_login_tokens_expire_and_are_revoked(make_archive: Callable[..., Archive]
                                             ) -> None:
    engine = make_archive().engine
    add_account(engine, "m1", ["member"], "pw-m1")
    short = issue_login_token(engine, "m1", seconds=1)
    day = issue_login_token(engine, "m1")
    assert day.lifetime == 24 * 3600
    assert caller_for_token(engine, short.value) is not None
    time.sleep(1.5)
    assert caller_for_token(engine, short.value) is None
    assert caller_for_token(engine, day.value) is not None
    api = issue_token(engine, "m1")
    assert not revoke_login_token(engine, api), "API tokens are not signed out"
    assert revoke_login_token(engine, day.value)
    assert caller_for_token(engine, day.value) is None
    assert caller_for_token(engine, api) is not None
    with engine.connect() as conn:  # only hashes are stored
        stored = set(conn.execute(text("SELECT token_hash FROM archive.token")
                                  ).scalars())
    assert api not in stored and token_hash(api) in stored
    # the next sign-in clears expired tokens away
    issue_login_token(engine, "m1")
    with engine.connect() as conn:
        assert token_hash(short.value) not in set(conn.execute(text(
            "SELECT token_hash FROM archive.token")).scalars())


def test_sessions_expire_end_and_go_with_the_tokens(
        make_archive: Callable[..., Archive]) -> None:
    engine = make_archive().engine
    add_account(engine, "m2", ["member"], "pw-m2")
    short = open_session(engine, "m2", seconds=1)
    s1 = open_session(engine, "m2", "127.0.0.1", "a browser")
    s2 = open_session(engine, "m2")
    assert len({short.value, s1.value, s2.value}) == 3
    time.sleep(1.5)
    assert caller_for_session(engine, short.value) is None
    assert caller_for_session(engine, s1.value) is not None
    # a session is not a token, nor a token a session
    assert caller_for_token(engine, s1.value) is None
    token = issue_login_token(engine, "m2")
    assert caller_for_session(engine, token.value) is None
    assert close_session(engine, s1.value)
    assert caller_for_session(engine, s1.value) is None
    assert not close_session(engine, s1.value)
    # revoking an account's tokens signs its browsers out too
    revoke_tokens(engine, "m2")
    assert caller_for_session(engine, s2.value) is None
