"""``vo-archive user``: accounts, roles, passwords and API tokens."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.engine import get_engine
from vo_archive.web.auth import (
    ROLES,
    AccountError,
    add_account,
    issue_token,
    list_accounts,
    remove_account,
    revoke_tokens,
    set_account,
)


def register(sub: Any) -> None:
    """Add the ``user`` command group."""
    p = sub.add_parser("user", help="manage accounts, roles and API tokens")
    usub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    a = add_command(usub, "add", cmd_add, "create an account")
    a.add_argument("name")
    a.add_argument("--role", action="append", choices=ROLES, default=[],
                   help="role to grant (repeatable): member sees proprietary data, "
                        "reducer may also upload, admin")
    _password_options(a)
    a.add_argument("--token", action="store_true",
                   help="also make an API token and print it")
    s = add_command(usub, "set", cmd_set, "change an account's roles or password")
    s.add_argument("name")
    s.add_argument("--role", action="append", choices=ROLES, default=None,
                   help="replace the roles with these (repeatable)")
    _password_options(s)
    s.add_argument("--no-password", action="store_true",
                   help="remove the password (tokens only)")
    r = add_command(usub, "remove", cmd_remove, "delete an account and its tokens")
    r.add_argument("name")
    lst = add_command(usub, "list", cmd_list, "list accounts")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    t = add_command(usub, "token", cmd_token,
                    "make an API token for an account (printed once)")
    t.add_argument("name")
    t.add_argument("--label", help="what the token is for (e.g. 'pipeline at NTT')")
    t.add_argument("--expires-days", type=int, default=None,
                   help="days until the token expires (default: never)")
    t.add_argument("--revoke", action="store_true",
                   help="revoke every token of the account instead")


def _password_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true",
                   help="read a password for HTTP Basic from standard input")
    g.add_argument("--password-prompt", action="store_true",
                   help="ask for a password for HTTP Basic")


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
    elif getattr(args, "password_prompt", False):
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            raise CommandError("the passwords differ")
    else:
        return None
    if len(pw) < 8:
        raise CommandError("a password needs at least 8 characters")
    return pw


def _engine(settings: Settings) -> Any:
    engine = get_engine(settings)
    if migrate.pending_revisions(engine):
        migrate.upgrade(engine, settings.publisher_authority)
    return engine


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Create an account."""
    engine = _engine(settings)
    try:
        add_account(engine, args.name, args.role, _read_password(args))
        roles = ", ".join(sorted(set(args.role))) or "none"
        print(f"account {args.name} created (roles: {roles})")
        if args.token:
            print(issue_token(engine, args.name))
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    """Change roles or password."""
    try:
        set_account(_engine(settings), args.name, args.role, _read_password(args),
                    clear_password=args.no_password)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    print(f"account {args.name} changed")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    """Delete an account."""
    try:
        remove_account(_engine(settings), args.name)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    print(f"account {args.name} removed with its tokens")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List accounts."""
    accounts = list_accounts(_engine(settings))
    if args.json:
        print(json.dumps([
            {"name": a.name, "roles": list(a.roles), "password": a.has_password,
             "tokens": a.tokens, "created": a.created_at.isoformat()}
            for a in accounts], indent=2))
        return 0
    for a in accounts:
        print(f"{a.name:<24} {','.join(a.roles) or '-':<24} "
              f"password={'yes' if a.has_password else 'no':<3} tokens={a.tokens}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """Make (or revoke) API tokens."""
    engine = _engine(settings)
    try:
        if args.revoke:
            n = revoke_tokens(engine, args.name)
            print(f"revoked {n} token(s) of {args.name}")
            return 0
        if args.expires_days is not None and args.expires_days <= 0:
            raise CommandError("--expires-days must be positive")
        token = issue_token(engine, args.name, args.label, args.expires_days)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    print(token)
    print("store this token now: it is not shown again", file=sys.stderr)
    return 0
