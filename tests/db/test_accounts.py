"""Accounts, tokens, the user CLI, policy re-application and hidden runs/targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Archive
from vo_archive.access import ANONYMOUS, Caller, caller_connection
from vo_archive.config import ReleasePolicy
from vo_archive.ingest.policy import apply_policy
from vo_archive.vo.dali.errors import AuthorizationFault
from vo_archive.web.auth import (
    PASSWORDS,
    AccountError,
    add_account,
    authenticate,
    caller_for_password,
    caller_for_token,
    issue_token,
    list_accounts,
    remove_account,
    revoke_tokens,
    set_account,
)

MEMBER = Caller("m", frozenset({"member"}))


@pytest.fixture(scope="module")
def archive(make_archive: Callable[..., Archive]) -> Archive:
    return make_archive()


def test_accounts_tokens_and_passwords(archive: Archive) -> None:
    e = archive.engine
    add_account(e, "alice", ["member"], "alice-password")
    add_account(e, "pipe", ["reducer", "member"])
    with pytest.raises(AccountError, match="exists already"):
        add_account(e, "alice", ["admin"])
    with pytest.raises(AccountError, match="unknown role"):
        add_account(e, "carol", ["superuser"])
    listed = {a.name: a for a in list_accounts(e)}
    assert listed["alice"].roles == ("member",) and listed["alice"].has_password
    assert listed["pipe"].roles == ("member", "reducer")
    assert not listed["pipe"].has_password

    tok = issue_token(e, "pipe", "NTT pipeline")
    with e.connect() as conn:
        stored = list(conn.execute(text("SELECT token_hash FROM archive.token")
                                   ).scalars())
    assert tok not in stored and len(stored) == 1, "only the hash is stored"
    assert caller_for_token(e, tok) == Caller("pipe", frozenset({"member", "reducer"}))
    assert caller_for_token(e, tok, "pipe") is not None
    assert caller_for_token(e, tok, "alice") is None, "a token is bound to its account"
    assert caller_for_token(e, tok + "x") is None

    assert caller_for_password(e, "alice", "alice-password") is not None
    assert caller_for_password(e, "alice", "wrong") is None
    assert caller_for_password(e, "pipe", "anything") is None, "no password set"
    assert caller_for_password(e, "nobody", "x") is None

    set_account(e, "alice", roles=["member", "admin"])
    PASSWORDS.clear()
    assert caller_for_password(e, "alice", "alice-password") == Caller(
        "alice", frozenset({"admin", "member"}))
    set_account(e, "alice", clear_password=True)
    PASSWORDS.clear()
    assert caller_for_password(e, "alice", "alice-password") is None
    with pytest.raises(AccountError):
        set_account(e, "nobody", roles=["member"])

    assert revoke_tokens(e, "pipe") == 1
    assert caller_for_token(e, tok) is None, "revocation takes effect at once"
    tok2 = issue_token(e, "pipe")
    remove_account(e, "pipe")
    assert caller_for_token(e, tok2) is None, "removing an account removes its tokens"
    with pytest.raises(AccountError):
        remove_account(e, "pipe")
    remove_account(e, "alice")


def test_expired_tokens_are_refused(archive: Archive) -> None:
    e = archive.engine
    add_account(e, "temp", ["member"])
    tok = issue_token(e, "temp", expires_days=1)
    assert caller_for_token(e, tok) is not None
    with e.begin() as conn:
        conn.execute(text(
            "UPDATE archive.token SET expires_at = now() - interval '1 s'"))
    assert caller_for_token(e, tok) is None
    with pytest.raises(AuthorizationFault) as info:
        authenticate(e, f"Bearer {tok}")
    assert info.value.status == 401
    remove_account(e, "temp")


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Bearer pva_nonexistent", "Bearer a b", "Bearer \u00ff\u00fe",
    "Basic", "Basic !!!", "Negotiate abc", "Digest username=x", "token", "",
    "Bearer " + "x" * 600,
])
def test_bad_authorization_headers_give_401(archive: Archive, header: str) -> None:
    with pytest.raises(AuthorizationFault) as info:
        authenticate(archive.engine, header)
    assert info.value.status == 401


def test_no_header_is_anonymous(archive: Archive) -> None:
    assert authenticate(archive.engine, None) is ANONYMOUS


def _cli(archive: Archive, *args: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    return subprocess.run([sys.executable, "-m", "vo_archive", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_user_command_line(archive: Archive) -> None:
    r = _cli(archive, "user", "add", "cli-user", "--role", "member", "--role",
             "reducer", "--password-stdin", stdin="long enough password\n")
    assert r.returncode == 0, r.stderr
    r = _cli(archive, "user", "add", "cli-user", "--role", "member")
    assert r.returncode == 2 and "exists already" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli(archive, "user", "add", "short-pw", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 8" in r.stderr
    r = _cli(archive, "user", "token", "cli-user", "--label", "test")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert "not shown again" in r.stderr
    assert caller_for_token(archive.engine, token) == Caller(
        "cli-user", frozenset({"member", "reducer"}))
    listed = json.loads(_cli(archive, "user", "list", "--json").stdout)
    entry = next(a for a in listed if a["name"] == "cli-user")
    assert entry["roles"] == ["member", "reducer"] and entry["password"] is True
    assert entry["tokens"] == 1
    r = _cli(archive, "user", "token", "no-such-user")
    assert r.returncode == 2 and "no account" in r.stderr
    r = _cli(archive, "user", "remove", "cli-user")
    assert r.returncode == 0
    assert caller_for_token(archive.engine, token) is None
    assert "cli-user" not in _cli(archive, "user", "list").stdout


def _visible_count(archive: Archive, caller: Caller, table: str) -> int:
    with caller_connection(archive.engine, caller) as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_runs_and_targets_of_proprietary_products_are_hidden(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:40] + demo_files[160:200])
    with archive.engine.begin() as conn:
        run_id, run_name = conn.execute(text(
            "SELECT run_id, name FROM archive.run ORDER BY run_id LIMIT 1")).one()
        # the whole run becomes proprietary (as a run observed last week is)
        conn.execute(text("UPDATE archive.product SET release_date = "
                          "now() + interval '300 days' WHERE run_id = :r"),
                     {"r": run_id})
        all_runs = conn.execute(text("SELECT count(*) FROM archive.run")).scalar_one()
        all_targets = conn.execute(text("SELECT count(*) FROM archive.target")
                                   ).scalar_one()
        hidden_targets = set(conn.execute(text(
            "SELECT t.name FROM archive.target t WHERE NOT EXISTS (SELECT 1 FROM "
            "archive.product p WHERE p.target_id = t.target_id "
            "AND p.release_date <= now())")).scalars())
    assert all_runs >= 2 and hidden_targets, "the test needs hidden runs and targets"
    assert _visible_count(archive, ANONYMOUS, "pessto.runs") == all_runs - 1
    assert _visible_count(archive, MEMBER, "pessto.runs") == all_runs
    assert _visible_count(archive, ANONYMOUS, "pessto.targets") == \
        all_targets - len(hidden_targets)
    assert _visible_count(archive, MEMBER, "pessto.targets") == all_targets
    with caller_connection(archive.engine, ANONYMOUS) as conn:
        runs = set(conn.execute(text("SELECT name FROM pessto.runs")).scalars())
        targets = set(conn.execute(text("SELECT name FROM pessto.targets")).scalars())
    assert run_name not in runs
    assert not hidden_targets & targets


def test_apply_policy_recomputes_release_dates(make_archive: Callable[..., Archive],
                                               demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:60])
    hidden = _visible_count(archive, MEMBER, "pessto.products") - \
        _visible_count(archive, ANONYMOUS, "pessto.products")
    assert hidden > 0
    with archive.engine.connect() as conn:
        intermediates = conn.execute(text(
            "SELECT count(*) FROM archive.product WHERE level = 'intermediate' "
            "AND night < now() - interval '2 days'")).scalar_one()
    assert intermediates > 0
    opener = ReleasePolicy(final_days=0, intermediate_days=0, raw_days=0)
    dry = apply_policy(archive.engine, opener, dry_run=True)
    assert dry.made_public > 0 and dry.checked == 60
    assert _visible_count(archive, MEMBER, "pessto.products") - \
        _visible_count(archive, ANONYMOUS, "pessto.products") == hidden, "dry run"
    done = apply_policy(archive.engine, opener)
    assert done.changed == dry.changed and done.made_public == dry.made_public
    with archive.engine.connect() as conn:
        future = conn.execute(text(
            "SELECT count(*) FROM archive.product WHERE night >= current_date - 1"
        )).scalar_one()
    assert _visible_count(archive, MEMBER, "pessto.products") - \
        _visible_count(archive, ANONYMOUS, "pessto.products") == future
    again = apply_policy(archive.engine, opener)
    assert again.changed == 0, "re-applying the same policy changes nothing"
    # back to the default: what ingest computes, exactly
    restore = apply_policy(archive.engine, ReleasePolicy())
    assert restore.made_proprietary == done.made_public
    assert _visible_count(archive, MEMBER, "pessto.products") - \
        _visible_count(archive, ANONYMOUS, "pessto.products") == hidden
    # the command line reads [policy] from the configuration file
    (archive.settings.home / "archive.toml").write_text(
        "[policy]\nintermediate_days = 0\nfinal_days = 0\nraw_days = 0\n")
    r = _cli(archive, "db", "apply-policy", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would change {dry.changed} release dates" in r.stdout


def test_password_guessing_is_throttled_per_account_and_address(archive: Archive
                                                                 ) -> None:
    import base64

    from vo_archive.web.auth import MAX_FAILURES, TooManyFailures

    e = archive.engine
    add_account(e, "guessed", ["member"], "the right password")
    tok = issue_token(e, "guessed")

    def basic(pw: str) -> str:
        return "Basic " + base64.b64encode(f"guessed:{pw}".encode()).decode()

    for i in range(MAX_FAILURES):
        with pytest.raises(AuthorizationFault) as info:
            authenticate(e, basic(f"guess {i}"), "10.0.0.66")
        assert info.value.status == 401
    with pytest.raises(TooManyFailures) as blocked:
        authenticate(e, basic("the right password"), "10.0.0.66")
    assert blocked.value.status == 429 and blocked.value.retry_after > 0
    # tokens are not throttled, nor are other addresses or accounts
    assert authenticate(e, f"Bearer {tok}", "10.0.0.66").name == "guessed"
    assert authenticate(e, basic(tok), "10.0.0.66").name == "guessed"
    assert authenticate(e, basic("the right password"), "10.0.0.67").name == "guessed"
    remove_account(e, "guessed")


def test_a_changed_password_stops_working_at_once(archive: Archive) -> None:
    """The worker's password cache never outlives the stored password (#18).

    Another node, or ``vo-archive user set`` on another host, may change it:
    the cache is checked against the account row on every use.
    """
    e = archive.engine
    add_account(e, "changer", ["member"], "first password")
    assert caller_for_password(e, "changer", "first password") is not None
    assert caller_for_password(e, "changer", "first password") is not None  # cached
    set_account(e, "changer", password="second password")  # noqa: S106 - a test's
    assert caller_for_password(e, "changer", "first password") is None
    assert caller_for_password(e, "changer", "second password") == Caller(
        "changer", frozenset({"member"}))
    set_account(e, "changer", roles=["admin"])
    assert caller_for_password(e, "changer", "second password") == Caller(
        "changer", frozenset({"admin"}))
    remove_account(e, "changer")
    assert caller_for_password(e, "changer", "second password") is None


def test_password_failures_are_counted_in_the_database(archive: Archive) -> None:
    """Guesses refused by one web node count on every other (#18)."""
    import base64

    from vo_archive.web.auth import MAX_FAILURES, TooManyFailures, failures_exceeded

    e = archive.engine
    add_account(e, "spread", ["member"], "the right one")

    def basic(pw: str) -> str:
        return "Basic " + base64.b64encode(f"spread:{pw}".encode()).decode()

    for i in range(MAX_FAILURES):
        with pytest.raises(AuthorizationFault):
            authenticate(e, basic(f"guess {i}"), "10.0.0.70")
    with e.connect() as conn:
        rows = conn.execute(text(
            "SELECT count(*) FROM archive.login_failure WHERE account_name = 'spread' "
            "AND remote_addr = '10.0.0.70'")).scalar_one()
    assert rows == MAX_FAILURES
    # a worker that never saw a failure (a fresh process, another node) refuses too
    PASSWORDS.clear()
    assert failures_exceeded(e, "spread", "10.0.0.70")
    with pytest.raises(TooManyFailures):
        authenticate(e, basic("the right one"), "10.0.0.70")
    with e.begin() as conn:  # the window passes
        conn.execute(text(
            "UPDATE archive.login_failure SET failed_at = failed_at - "
            "interval '1 hour' WHERE account_name = 'spread'"))
    assert authenticate(e, basic("the right one"), "10.0.0.70").name == "spread"
    remove_account(e, "spread")
