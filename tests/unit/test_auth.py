"""Password hashing, tokens and Authorization header parsing (no database)."""

from __future__ import annotations

import base64

import pytest

from vo_archive.vo.dali.errors import AuthorizationFault
from vo_archive.web.auth import (
    TOKEN_PREFIX,
    AccountError,
    check_name,
    check_roles,
    hash_password,
    new_token,
    parse_basic,
    token_hash,
    verify_password,
)


def test_password_hash_round_trip_and_salting() -> None:
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1 != h2, "each hash has its own salt"
    assert h1.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", h1)
    assert verify_password("correct horse", h2)
    assert not verify_password("correct horsE", h1)
    assert not verify_password("", h1)


@pytest.mark.parametrize("stored", [None, "", "plain", "md5$x$y", "scrypt$1$2$3$zz$00",
                                    "scrypt$16384$8$1$00$", "scrypt$a$b$c$d$e"])
def test_malformed_stored_hashes_never_verify(stored: str | None) -> None:
    assert not verify_password("anything", stored)


def test_tokens_are_random_and_stored_as_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    t = tokens.pop()
    assert t.startswith(TOKEN_PREFIX) and len(t) >= len(TOKEN_PREFIX) + 43
    assert len(token_hash(t)) == 64 and token_hash(t) == token_hash(t)
    assert token_hash(t) != t


def _b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


@pytest.mark.parametrize(("value", "expected"), [
    (_b64(b"alice:secret"), ("alice", "secret")),
    (_b64(b"alice:se:cret"), ("alice", "se:cret")),
    (_b64("jos\u00e9:p\u00e4ss".encode()), ("jos\u00e9", "p\u00e4ss")),
    ("  " + _b64(b"bob:x") + " ", ("bob", "x")),
])
def test_parse_basic_accepts(value: str, expected: tuple[str, str]) -> None:
    assert parse_basic(value) == expected


@pytest.mark.parametrize("value", [
    "", "not base64!", _b64(b"nocolon"), _b64(b":nopassword"), _b64(b"user:"),
    _b64(b"\xff\xfe:\xff"), "YWxpY2U6c2VjcmV0===x",
])
def test_parse_basic_rejects_with_401(value: str) -> None:
    with pytest.raises(AuthorizationFault) as info:
        parse_basic(value)
    assert info.value.status == 401


@pytest.mark.parametrize(("name", "ok"), [
    ("alice", True), ("pipeline.ntt", True), ("a@b-c_d", True), ("x" * 64, True),
    ("x" * 65, False), ("", False), ("-lead", False), ("a b", False),
    ("a/b", False), ("é", False), ("a\x00", False),
])
def test_account_names(name: str, ok: bool) -> None:
    if ok:
        assert check_name(name) == name
    else:
        with pytest.raises(AccountError):
            check_name(name)


def test_roles_are_checked_and_normalised() -> None:
    assert check_roles(["reducer", "member", "member"]) == ["member", "reducer"]
    assert check_roles([]) == []
    with pytest.raises(AccountError, match="unknown role 'root'"):
        check_roles(["member", "root"])
