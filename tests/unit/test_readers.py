"""Read nodes: WAL positions, lag timing, which errors send a read elsewhere."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import exc

from vo_archive.config import ConfigError, load_settings
from vo_archive.db.readers import LagClock, display_dsn, node_failure, parse_lsn


@pytest.mark.parametrize(("text", "value"), [
    (None, None), ("", None), ("0/0", 0), ("0/3000000", 0x3000000),
    ("16/B374D848", (0x16 << 32) + 0xB374D848), ("1/0", 1 << 32),
])
def test_parse_lsn(text: str | None, value: int | None) -> None:
    assert parse_lsn(text) == value


#: primary positions seen (time, lsn); the standby's replayed lsn; now; lag
@pytest.mark.parametrize(("seen", "replayed", "now", "lag"), [
    ([], 100, 10.0, 0.0),
    ([(0.0, 100)], 100, 10.0, 0.0),           # caught up
    ([(0.0, 100)], 120, 10.0, 0.0),           # ahead of the last sample
    ([(0.0, 100), (4.0, 200)], 100, 10.0, 6.0),  # behind since 4.0
    ([(0.0, 100), (4.0, 200)], 50, 10.0, 10.0),  # behind since 0.0
    ([(0.0, 100), (4.0, 100), (7.0, 300)], 150, 10.0, 3.0),  # same lsn kept once
])
def test_lag_clock(seen: list[tuple[float, int]], replayed: int, now: float,
                   lag: float) -> None:
    clock = LagClock(keep_s=60.0)
    for at, lsn in seen:
        clock.see(at, lsn)
    assert clock.behind(replayed, now) == pytest.approx(lag)


def test_lag_clock_keeps_a_bound_of_what_it_forgot() -> None:
    clock = LagClock(keep_s=10.0)
    for t in range(100):
        clock.see(float(t), 1000 + t)
    # far behind: reported as at least as far as the history reaches
    assert clock.behind(0, 100.0) >= 10.0
    assert clock.behind(1098, 100.0) == pytest.approx(1.0)


def _operational(code: str | None) -> psycopg2.OperationalError:
    error = psycopg2.OperationalError("x")
    if code is not None:
        # pgcode is read-only on the class; a subclass per SQLSTATE carries it
        error = psycopg2.errors.lookup(code)("x")
    return error


@pytest.mark.parametrize(("error", "elsewhere"), [
    (_operational(None), True),                       # refused, dropped
    (_operational("57P01"), True),                    # admin shutdown
    (_operational("57P03"), True),                    # cannot connect now
    (_operational("53300"), True),                    # too many connections
    (_operational("40001"), True),                    # conflict with recovery
    (_operational("57014"), False),                   # statement timeout
    (psycopg2.InterfaceError("connection already closed"), True),
    (psycopg2.errors.lookup("42703")("no such column"), False),
    (exc.OperationalError("SELECT 1", {}, _operational(None)), True),
    (exc.ProgrammingError("SELECT x", {}, psycopg2.errors.lookup("42703")("x")),
     False),
    (exc.TimeoutError("pool exhausted"), True),
    (ValueError("not a database error"), False),
])
def test_node_failure(error: BaseException, elsewhere: bool) -> None:
    assert node_failure(error) is elsewhere


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://u:secret@127.0.0.1:5433/pessto", "127.0.0.1:5433/pessto"),
    ("postgres://u:secret@db.example/pessto", "db.example:5432/pessto"),
    ("host=10.0.0.2 port=6000 dbname=pessto password=secret", "10.0.0.2:6000/pessto"),
])
def test_display_dsn_hides_the_password(dsn: str, shown: str) -> None:
    assert display_dsn(dsn) == shown


def test_settings_read_dsns_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "archive.toml").write_text(
        '[archive]\nread_dsns = ["postgresql://a/p", "host=b dbname=p"]\n'
        "max_standby_lag = 5\nstandby_check_interval = 0.5\n")
    env = {"VO_ARCHIVE_HOME": str(tmp_path)}
    s = load_settings(env)
    assert s.read_dsns == ("postgresql://a/p", "host=b dbname=p")
    assert (s.max_standby_lag, s.standby_check_interval) == (5.0, 0.5)
    s = load_settings(dict(env, VO_ARCHIVE_READ_DSNS=" postgresql://c/p  postgresql://d/p",
                           VO_ARCHIVE_MAX_STANDBY_LAG="1.5"))
    assert s.read_dsns == ("postgresql://c/p", "postgresql://d/p")
    assert s.max_standby_lag == 1.5
    default = load_settings({"VO_ARCHIVE_HOME": str(tmp_path / "none")})
    assert default.read_dsns == () and default.max_standby_lag == 30.0


@pytest.mark.parametrize("body", [
    'read_dsns = "postgresql://a/p"', "read_dsns = [1, 2]", "max_standby_lag = 0",
    "standby_check_interval = -1", 'max_standby_lag = "soon"',
])
def test_settings_refuse_bad_standby_values(tmp_path: Path, body: str) -> None:
    (tmp_path / "archive.toml").write_text(f"[archive]\n{body}\n")
    with pytest.raises(ConfigError):
        load_settings({"VO_ARCHIVE_HOME": str(tmp_path)})
