"""Who is calling: accounts, API tokens, passwords, and the request hook.

Clients authenticate with ``Authorization: Bearer TOKEN`` (RFC 6750) or HTTP
Basic (RFC 7617) with the account name and either an API token or the account's
password (TOPCAT and pyvo sessions speak Basic). The hook :func:`load_caller`,
registered by ``create_app``, sets ``flask.g.caller``; every service reads it
through :func:`vo_archive.access.current_caller`.

- No ``Authorization`` header: the caller is anonymous and sees public data.
- Credentials that do not check out (unknown token, wrong password, unknown
  scheme, malformed header): 401 with ``WWW-Authenticate``, in the protocol's
  error form. A client that tried to authenticate is never silently served as
  anonymous, which would hide proprietary rows without telling it why.
- VOSI ``/capabilities`` and ``/availability`` are anonymous (VOSI 1.1 §2): the
  header is not even read there.
- Without an ``Authorization`` header, the session cookie of the sign-in form
  (:mod:`vo_archive.web.signin`) counts; a stale one is cleared, never refused.
- Under the authenticated twin (``/auth/...``, :mod:`vo_archive.web.twin`) an
  anonymous caller gets 401.

``/login`` hands out login tokens (``archive.token.kind = 'login'``, 24 hours)
and browser sessions (``archive.session``); both are random secrets stored as
their SHA-256, in the database, so every web node sees them.

Tokens are 32 random bytes, shown once and stored as their SHA-256 (a fast hash
is enough for random secrets). Passwords are stored with scrypt (RFC 7914); a
verified Basic password is remembered for :data:`PASSWORD_CACHE_SECONDS` in the
worker, keyed by a hash of the credentials and of the stored password hash, so a
client sending Basic on every request does not pay the KDF every time, while a
password changed or cleared (on any node, or by ``vo-archive user``) stops
working at once everywhere. After :data:`MAX_FAILURES` wrong passwords for one
account from one address, further password attempts there are refused (429)
without running the KDF for :data:`FAILURE_WINDOW` seconds; the failures are
counted in the database (``archive.login_failure``), so the limit holds however
many web workers and nodes the guesses are spread over.

Nothing here lives only in a web worker's memory but the password cache above,
which is checked against the database on every use: any number of web nodes can
serve the same callers, and no secret needs to be shared between them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import g, request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from vo_archive import web
from vo_archive.access import ANONYMOUS, Caller
from vo_archive.vo.dali.errors import AuthorizationFault, TransientFault

log = logging.getLogger(__name__)

#: Roles an account may hold.
ROLES = ("member", "reducer", "admin")
#: Roles that may push products through the upload endpoint.
UPLOAD_ROLES = frozenset({"reducer", "admin"})
TOKEN_PREFIX = "pva_"  # noqa: S105 - the visible prefix of tokens, not a secret
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}\Z")
#: scrypt cost: N=2^14, r=8, p=1 (16 MiB, some 50 ms): RFC 7914's interactive level.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
PASSWORD_CACHE_SECONDS = 60.0
#: At most this many wrong passwords per account and client address per window.
MAX_FAILURES = 20
FAILURE_WINDOW = 60.0
#: Paths that stay anonymous whatever the request carries (VOSI 1.1 §2).
ANONYMOUS_SUFFIXES = ("/capabilities", "/availability")
REALM = "PESSTO archive"
#: How long a token handed out by ``/login`` works.
LOGIN_TOKEN_SECONDS = 24 * 3600
#: How long a browser session of the sign-in form lasts.
SESSION_SECONDS = 24 * 3600
SESSION_COOKIE = "vo_archive_session"
SESSION_PREFIX = "pvs_"


class TooManyFailures(TransientFault):
    """Too many wrong passwords for one account from one address: wait, retry."""

    status = 429


# -- secrets ----------------------------------------------------------------


def hash_password(password: str) -> str:
    """Return the scrypt hash of ``password`` as ``scrypt$N$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Return whether ``password`` matches a hash made by :func:`hash_password`."""
    if not stored:
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def new_token() -> str:
    """Return a fresh API token (32 random bytes, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Return how a token is stored: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- accounts ----------------------------------------------------------------


class AccountError(Exception):
    """An account operation that cannot be done (unknown name, bad role...)."""


@dataclass(frozen=True, slots=True)
class Account:
    """An account as listed."""

    name: str
    roles: tuple[str, ...]
    has_password: bool
    tokens: int
    created_at: datetime


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid account name.

    Raises
    ------
    AccountError
        If it is not: 1 to 64 letters, digits, ``._@-``, not starting with a sign.
    """
    if not NAME_PATTERN.match(name):
        raise AccountError(f"invalid account name {name!r}: use 1-64 letters, digits "
                           "and ._@- (starting with a letter or digit)")
    return name


def check_roles(roles: Sequence[str]) -> list[str]:
    """Return the sorted, distinct roles, or raise AccountError for an unknown one."""
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise AccountError(f"unknown role {bad[0]!r} (roles: {', '.join(ROLES)})")
    return sorted(set(roles))


def add_account(engine: Engine, name: str, roles: Sequence[str],
                password: str | None = None) -> None:
    """Create an account.

    Raises
    ------
    AccountError
        If the name is invalid or taken, or a role is unknown.
    """
    check_name(name)
    role_list = check_roles(roles)
    pw_hash = hash_password(password) if password else None
    with engine.begin() as conn:
        row = conn.execute(text(
            "INSERT INTO archive.account (name, roles, password_hash) "
            "VALUES (:n, :r, :p) ON CONFLICT (name) DO NOTHING RETURNING account_id"),
            {"n": name, "r": role_list, "p": pw_hash}).first()
    if row is None:
        raise AccountError(f"account {name!r} exists already")


def set_account(engine: Engine, name: str, roles: Sequence[str] | None = None,
                password: str | None = None, clear_password: bool = False) -> None:
    """Change an account's roles or password."""
    sets: list[str] = []
    args: dict[str, object] = {"n": name}
    if roles is not None:
        sets.append("roles = :r")
        args["r"] = check_roles(roles)
    if password:
        sets.append("password_hash = :p")
        args["p"] = hash_password(password)
    elif clear_password:
        sets.append("password_hash = NULL")
    if not sets:
        return
    with engine.begin() as conn:
        done = conn.execute(text(
            f"UPDATE archive.account SET {', '.join(sets)} WHERE name = :n"),  # noqa: S608 - fixed column list
            args).rowcount
    if not done:
        raise AccountError(f"no account {name!r}")


def remove_account(engine: Engine, name: str) -> None:
    """Delete an account and its tokens."""
    with engine.begin() as conn:
        done = conn.execute(text("DELETE FROM archive.account WHERE name = :n"),
                            {"n": name}).rowcount
    if not done:
        raise AccountError(f"no account {name!r}")


def list_accounts(engine: Engine) -> list[Account]:
    """Return every account, by name."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT a.name, a.roles, a.password_hash IS NOT NULL, "
            "count(t.token_hash) FILTER (WHERE t.expires_at IS NULL "
            "OR t.expires_at > now()), a.created_at "
            "FROM archive.account a LEFT JOIN archive.token t USING (account_id) "
            "GROUP BY a.account_id ORDER BY a.name")).all()
    return [Account(r[0], tuple(r[1]), r[2], r[3], r[4]) for r in rows]


def issue_token(engine: Engine, name: str, label: str | None = None,
                expires_days: int | None = None) -> str:
    """Make a new API token for an account; return it (it is not stored)."""
    token = new_token()
    with engine.begin() as conn:
        row = conn.execute(text(
            "INSERT INTO archive.token (token_hash, account_id, label, expires_at) "
            "SELECT :h, account_id, :l, "
            "CASE WHEN CAST(:d AS integer) IS NULL THEN NULL "
            "ELSE now() + make_interval(days => CAST(:d AS integer)) END "
            "FROM archive.account WHERE name = :n RETURNING account_id"),
            {"h": token_hash(token), "l": label, "d": expires_days, "n": name}).first()
    if row is None:
        raise AccountError(f"no account {name!r}")
    return token


def revoke_tokens(engine: Engine, name: str) -> int:
    """Revoke every token of an account; return how many there were."""
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM archive.account WHERE name = :n"),
                        {"n": name}).first() is None:
            raise AccountError(f"no account {name!r}")
        # signed-in browsers are signed out too
        conn.execute(text(
            "DELETE FROM archive.session WHERE account_id = "
            "(SELECT account_id FROM archive.account WHERE name = :n)"), {"n": name})
        return int(conn.execute(text(
            "DELETE FROM archive.token WHERE account_id = "
            "(SELECT account_id FROM archive.account WHERE name = :n)"),
            {"n": name}).rowcount)


# -- sign-in: login tokens and browser sessions --------------------------------


@dataclass(frozen=True, slots=True)
class Permit:
    """A secret handed out at sign-in, and when it stops working."""

    value: str
    expires_at: datetime
    lifetime: int


def _purge_expired(conn: Connection) -> None:
    conn.execute(text("DELETE FROM archive.session WHERE expires_at < now()"))
    conn.execute(text("DELETE FROM archive.token WHERE kind = 'login' "
                      "AND expires_at < now()"))


def issue_login_token(engine: Engine, name: str,
                      seconds: int = LOGIN_TOKEN_SECONDS) -> Permit:
    """Make a short-lived login token for an account (stored as its SHA-256).

    Raises
    ------
    AccountError
        If there is no such account.
    """
    token = new_token()
    with engine.begin() as conn:
        _purge_expired(conn)
        row = conn.execute(text(
            "INSERT INTO archive.token (token_hash, account_id, label, expires_at, "
            "kind) SELECT :h, account_id, 'login', "
            "now() + make_interval(secs => :s), 'login' "
            "FROM archive.account WHERE name = :n RETURNING expires_at"),
            {"h": token_hash(token), "s": seconds, "n": name}).first()
    if row is None:
        raise AccountError(f"no account {name!r}")
    return Permit(token, row[0], seconds)


def revoke_login_token(engine: Engine, token: str) -> bool:
    """Revoke one login token; return whether it was one (API tokens are kept)."""
    with engine.begin() as conn:
        return bool(conn.execute(text(
            "DELETE FROM archive.token WHERE token_hash = :h AND kind = 'login'"),
            {"h": token_hash(token)}).rowcount)


def open_session(engine: Engine, name: str, addr: str | None = None,
                 user_agent: str | None = None,
                 seconds: int = SESSION_SECONDS) -> Permit:
    """Start a browser session for an account; return the cookie's value.

    The value is always new (never one the browser sent before signing in, so
    a session cannot be fixed by whoever planted a cookie), and only its
    SHA-256 is stored.

    Raises
    ------
    AccountError
        If there is no such account.
    """
    value = SESSION_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        _purge_expired(conn)
        row = conn.execute(text(
            "INSERT INTO archive.session (session_hash, account_id, expires_at, "
            "remote_addr, user_agent) SELECT :h, account_id, "
            "now() + make_interval(secs => :s), :a, :u "
            "FROM archive.account WHERE name = :n RETURNING expires_at"),
            {"h": token_hash(value), "s": seconds, "a": addr,
             "u": (user_agent or "")[:200], "n": name}).first()
    if row is None:
        raise AccountError(f"no account {name!r}")
    return Permit(value, row[0], seconds)


def caller_for_session(engine: Engine, value: str) -> Caller | None:
    """Return the caller of a live session cookie (None: no such live session)."""
    if not value.startswith(SESSION_PREFIX) or not _TOKEN_CHARS.match(value):
        return None
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT a.name, a.roles FROM archive.session s "
            "JOIN archive.account a USING (account_id) "
            "WHERE s.session_hash = :h AND s.expires_at > now()"),
            {"h": token_hash(value)}).first()
    return None if row is None else Caller(row[0], frozenset(row[1]))


def close_session(engine: Engine, value: str) -> bool:
    """End a browser session; return whether it was live."""
    with engine.begin() as conn:
        return bool(conn.execute(text(
            "DELETE FROM archive.session WHERE session_hash = :h"),
            {"h": token_hash(value)}).rowcount)


def session_csrf(value: str) -> str:
    """Return the CSRF token of a session: derived from its secret cookie.

    A page of another site can neither read the cookie nor this token, and
    every web node can recompute it without shared state.
    """
    return hashlib.sha256(f"csrf\x00{value}".encode()).hexdigest()[:40]


# -- authentication -----------------------------------------------------------


def caller_for_token(engine: Engine, token: str, name: str | None = None
                     ) -> Caller | None:
    """Return the caller a valid token stands for (None: no such live token).

    With ``name`` (HTTP Basic), the token must belong to that account.
    """
    with engine.begin() as conn:
        row = conn.execute(text(
            "SELECT a.name, a.roles, t.last_used_at > now() - interval '10 minutes' "
            "FROM archive.token t JOIN archive.account a USING (account_id) "
            "WHERE t.token_hash = :h "
            "AND (t.expires_at IS NULL OR t.expires_at > now()) "
            "AND (CAST(:n AS text) IS NULL OR a.name = :n)"),
            {"h": token_hash(token), "n": name}).first()
        if row is not None and not row[2]:
            # Record use coarsely: one write per token every ten minutes at most.
            conn.execute(text("UPDATE archive.token SET last_used_at = now() "
                              "WHERE token_hash = :h"), {"h": token_hash(token)})
    if row is None:
        return None
    return Caller(row[0], frozenset(row[1]))


class _PasswordCache:
    """Verified Basic credentials of this worker, for a short while.

    A key covers the name, the password and the stored hash it was checked
    against: a changed or cleared password misses the cache on every node.
    """

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._items: dict[str, float] = {}

    @staticmethod
    def key(name: str, password: str, stored: str) -> str:
        return hashlib.sha256(f"{name}\x00{password}\x00{stored}".encode()).hexdigest()

    def get(self, key: str) -> bool:
        with self._lock:
            until = self._items.get(key)
            if until is None or until < time.monotonic():
                self._items.pop(key, None)
                return False
            return True

    def put(self, key: str) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = time.monotonic() + self.ttl

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PASSWORDS = _PasswordCache(PASSWORD_CACHE_SECONDS)


def caller_for_password(engine: Engine, name: str, password: str) -> Caller | None:
    """Return the caller of a valid name and password (None: they do not match).

    The account is read on every call (its roles and password as they are now);
    only the KDF run is saved by :data:`PASSWORDS`.
    """
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT name, roles, password_hash FROM archive.account WHERE name = :n"),
            {"n": name}).first()
    if row is None or not row[2]:
        return None
    key = PASSWORDS.key(name, password, row[2])
    if not PASSWORDS.get(key):
        if not verify_password(password, row[2]):
            return None
        PASSWORDS.put(key)
    return Caller(row[0], frozenset(row[1]))


def failures_exceeded(engine: Engine, name: str, addr: str) -> bool:
    """Return whether ``addr`` guessed ``name``'s password too often lately.

    Counts the rows of ``archive.login_failure`` within :data:`FAILURE_WINDOW`,
    written by :func:`record_failure` on whichever web node refused them.
    """
    with engine.connect() as conn:
        seen = conn.execute(text(
            "SELECT count(*) FROM archive.login_failure WHERE account_name = :n "
            "AND remote_addr = :a AND failed_at > now() - make_interval(secs => :w)"),
            {"n": name, "a": addr, "w": FAILURE_WINDOW}).scalar_one()
    return int(seen) >= MAX_FAILURES


def record_failure(engine: Engine, name: str, addr: str) -> None:
    """Count a wrong password for ``name`` from ``addr``; forget expired ones."""
    with engine.begin() as conn:
        conn.execute(text(
            "DELETE FROM archive.login_failure "
            "WHERE failed_at < now() - make_interval(secs => :w)"),
            {"w": FAILURE_WINDOW})
        conn.execute(text(
            "INSERT INTO archive.login_failure (account_name, remote_addr) "
            "VALUES (:n, :a)"), {"n": name, "a": addr})


def _unauthorized(message: str) -> AuthorizationFault:
    return AuthorizationFault(message, authenticate=True)


def parse_basic(value: str) -> tuple[str, str]:
    """Return (name, secret) of a Basic credential (RFC 7617 §2).

    Raises
    ------
    AuthorizationFault
        401 if it is not base64 of UTF-8 ``name:secret``.
    """
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _unauthorized("malformed Basic credentials") from None
    name, sep, secret = decoded.partition(":")
    if not sep or not name or not secret:
        raise _unauthorized("Basic credentials must be 'name:token' or "
                            "'name:password'")
    return name, secret


def check_secret(engine: Engine, name: str, secret: str, addr: str = "?") -> Caller:
    """Return the caller of an account name and its password or one of its tokens.

    HTTP Basic, the sign-in form and ``/login`` all come here, so they share the
    limit on wrong passwords.

    Raises
    ------
    AuthorizationFault
        401 if the name and secret do not match.
    TooManyFailures
        429 when this address guessed this account's password too often lately.
    """
    if not NAME_PATTERN.match(name) or not secret or len(secret) > 1024:
        raise _unauthorized("wrong account name or password")
    caller = None
    if _TOKEN_CHARS.match(secret):
        caller = caller_for_token(engine, secret, name)
    if caller is None:
        # Only password checks are limited: they cost a KDF run each and are
        # what a guesser would try; random tokens cannot be guessed.
        if failures_exceeded(engine, name, addr):
            raise TooManyFailures(
                "too many failed logins for this account from this address; "
                "try again later", retry_after=int(FAILURE_WINDOW))
        caller = caller_for_password(engine, name, secret)
        if caller is None:
            record_failure(engine, name, addr)
    if caller is None:
        raise _unauthorized("wrong account name, token or password")
    return caller


def authenticate(engine: Engine, header: str | None, addr: str = "?") -> Caller:
    """Return the caller an ``Authorization`` header value stands for.

    Parameters
    ----------
    engine
        Engine of the archive database.
    header
        The ``Authorization`` header, or None.
    addr
        The client's address: password guesses are counted per address and name.

    Raises
    ------
    AuthorizationFault
        401 (with ``WWW-Authenticate``) for credentials that do not check out.
    TooManyFailures
        429 when this address guessed this account's password too often lately.
    """
    if header is None:
        return ANONYMOUS
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        if not _TOKEN_CHARS.match(value):
            raise _unauthorized("malformed bearer token")
        caller = caller_for_token(engine, value)
        if caller is None:
            raise _unauthorized("invalid or expired token")
        return caller
    if scheme == "basic":
        name, secret = parse_basic(value)
        return check_secret(engine, name, secret, addr)
    raise _unauthorized(f"unsupported authentication scheme {scheme[:20]!r} "
                        "(use Bearer or Basic)")


def load_caller() -> None:
    """Set ``g.caller`` from the request's credentials (a ``before_request`` hook).

    The ``Authorization`` header wins; without one, a session cookie of the
    sign-in form counts, except on a cross-site request that would change
    something (an ``Origin`` of another site on a POST, PUT or DELETE). In the
    authenticated twin a caller without credentials gets 401 with the
    challenges (``g.auth_scheme`` says how the caller authenticated).

    Raises
    ------
    AuthorizationFault
        401 for credentials that do not check out, and for an anonymous caller
        in the twin.
    TooManyFailures
        429 when this address guessed an account's password too often lately.
    """
    g.caller = ANONYMOUS
    g.auth_scheme = None
    if request.path.endswith(ANONYMOUS_SUFFIXES):
        return
    header = request.headers.get("Authorization")
    addr = request.remote_addr or "?"
    try:
        if header is not None:
            g.caller = authenticate(web.engine(), header, addr)
            g.auth_scheme = header.strip().partition(" ")[0].lower()
        elif request.cookies.get(SESSION_COOKIE):
            _load_session(request.cookies.getlist(SESSION_COOKIE))
    except SQLAlchemyError as exc:
        log.error("cannot check credentials: %s [%s]", exc, g.get("request_id"))
        raise TransientFault("cannot check credentials now; try again later",
                             retry_after=10) from None
    except AuthorizationFault as fault:
        log.warning("authentication failed from %s on %s: %s [%s] (%s)", addr,
                    request.path, fault.message, g.get("request_id"),
                    request.user_agent.string[:100])
        raise
    if web.in_twin() and g.caller.anonymous and request.path not in TWIN_OPEN:
        raise AuthorizationFault(
            f"{web.TWIN_PREFIX}/... is the authenticated twin of the archive: send "
            "an account name and password or token (HTTP Basic) or a bearer token, "
            f"or use {web.public_base_url()}{request.path} anonymously",
            authenticate=True)


#: Paths of the twin open to anonymous callers, beyond capabilities/availability.
TWIN_OPEN = frozenset({"/login"})
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def same_origin() -> bool:
    """Return whether the request's ``Origin`` (if any) is the archive's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by a browser (browsers send it on every POST)
    own = {urlsplit(request.host_url), urlsplit(web.public_base_url())}
    return any(origin.rstrip("/") == f"{u.scheme}://{u.netloc}" for u in own)


def _load_session(values: list[str]) -> None:
    if request.method in _UNSAFE and not same_origin():
        log.warning("session cookie ignored on a cross-site %s of %s [%s]",
                    request.method, request.path, g.get("request_id"))
        return
    # a cookie planted for a narrower path or domain comes first: try them all
    for value in values[:4]:
        caller = caller_for_session(web.engine(), value)
        if caller is not None:
            g.caller = caller
            g.auth_scheme = "cookie"
            g.session_value = value
            return
    g.stale_session = True  # the answer clears the cookie


def require_roles(roles: frozenset[str], action: str) -> Caller:
    """Return the request's caller if it holds one of ``roles``.

    Raises
    ------
    AuthorizationFault
        401 for an anonymous caller, 403 for one without the role.
    """
    caller: Caller = g.get("caller", ANONYMOUS)
    if caller.anonymous:
        raise AuthorizationFault(f"{action} needs authentication", authenticate=True)
    if not caller.roles & roles:
        raise AuthorizationFault(
            f"{action} needs the role {' or '.join(sorted(roles))}; "
            f"{caller.name} has {', '.join(sorted(caller.roles)) or 'none'}")
    return caller
