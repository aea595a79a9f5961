"""Cross-match of the archive's targets with the Marshall's transients.

The matching itself is in the database (``archive.marshall_rematch``, migration
``0013_marshall_match``), so that the refresh triggers, the ingest and this
module apply one rule.  Here: filling ``archive.marshall_index`` from the
Marshall, wherever it lives (the ``marshall`` schema of the archive's own
database, or another database named by ``[marshall] dsn``), matching every
target, and reporting the outcome.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg2

from vo_archive.marshall.names import name_key

__all__ = ["AmbiguousCase", "MatchReport", "load_index", "match_all", "rematch_targets"]

DEFAULT_RADIUS_ARCSEC = 3.0


@dataclass(frozen=True, slots=True)
class AmbiguousCase:
    """A target the match could not decide, with its candidate transients."""

    target_id: int
    target: str
    reason: str
    candidates: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class MatchReport:
    """Outcome of a full match."""

    matched: int
    unmatched: int
    ambiguous: int
    transients: int
    cases: tuple[AmbiguousCase, ...]


def _local_marshall(cur: Any) -> bool:
    cur.execute("SELECT to_regclass('marshall.transients') IS NOT NULL")
    return bool(cur.fetchone()[0])


def _fetch_remote(dsn: str) -> list[tuple[int, str, float, float]]:
    conn = psycopg2.connect(dsn)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT transient_id, name, ra_deg, dec_deg "
                        "FROM marshall.transients")
            return [(int(a), str(b), float(c), float(d)) for a, b, c, d in cur]
    finally:
        conn.close()


def load_index(cur: Any, marshall_dsn: str | None) -> int:
    """Refill ``archive.marshall_index`` from the Marshall; return its row count.

    Parameters
    ----------
    cur
        A cursor on the archive's database, inside a transaction.
    marshall_dsn
        The Marshall's database; ``None`` for the ``marshall`` schema of the
        archive's own database.

    Raises
    ------
    LookupError
        If there is no DSN and no ``marshall.transients`` in the archive.
    """
    cur.execute("DELETE FROM archive.marshall_index")
    if marshall_dsn is None:
        if not _local_marshall(cur):
            raise LookupError("no marshall.transients in the archive's database "
                              "and no [marshall] dsn configured")
        cur.execute(
            "INSERT INTO archive.marshall_index "
            "SELECT transient_id, name, archive.marshall_name_key(name), "
            "spoint(radians(ra_deg), radians(dec_deg)) FROM marshall.transients")
        return int(cur.rowcount)
    rows = _fetch_remote(marshall_dsn)
    buf = io.StringIO()
    for tid, name, ra, dec in rows:
        buf.write(f"{tid}\t{_copy_text(name)}\t{_copy_text(name_key(name))}\t"
                  f"({math.radians(ra)!r}, {math.radians(dec)!r})\n")
    buf.seek(0)
    cur.copy_expert("COPY archive.marshall_index (transient_id, name, name_key, pos) "
                    "FROM STDIN", buf)
    return len(rows)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def rematch_targets(cur: Any, target_ids: Iterable[int]) -> int:
    """Match these targets again (ingest: new targets); return targets settled."""
    ids = sorted(set(target_ids))
    if not ids:
        return 0
    # A database not yet upgraded to 0013_marshall_match has nothing to match.
    cur.execute("SELECT to_regprocedure('archive.marshall_rematch(integer[])')")
    if cur.fetchone()[0] is None:
        return 0
    cur.execute("SELECT archive.marshall_rematch(%s::integer[])", (ids,))
    return int(cur.fetchone()[0])


def match_all(conn: Any, marshall_dsn: str | None = None,
              radius_arcsec: float | None = None, dry_run: bool = False
              ) -> MatchReport:
    """Match every target with the Marshall; commit unless ``dry_run``.

    Parameters
    ----------
    conn
        A DB-API connection to the archive (psycopg2), not in autocommit.
    marshall_dsn
        The Marshall's database, or ``None`` for the archive's own ``marshall``
        schema (then the refresh triggers are installed as well).
    radius_arcsec
        Positional radius; ``None`` keeps the configured one.
    dry_run
        Roll back: report what the match would do, change nothing.

    Returns
    -------
    MatchReport
        Counts and the ambiguous cases.
    """
    try:
        with conn.cursor() as cur:
            if radius_arcsec is not None:
                cur.execute("UPDATE archive.marshall_config SET radius_arcsec = %s",
                            (radius_arcsec,))
            transients = load_index(cur, marshall_dsn)
            if marshall_dsn is None:
                cur.execute("SELECT archive.marshall_install_refresh()")
            cur.execute("SELECT archive.marshall_rematch(NULL)")
            report = _report(cur, transients)
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return report


def _report(cur: Any, transients: int) -> MatchReport:
    cur.execute("SELECT status, count(*) FROM archive.marshall_match GROUP BY status")
    counts = dict(cur.fetchall())
    cur.execute(
        """
        SELECT m.target_id, t.name, m.reason,
               ARRAY(SELECT c FROM unnest(m.candidates) c ORDER BY c),
               ARRAY(SELECT coalesce(i.name, '?') FROM unnest(m.candidates) c
                     LEFT JOIN archive.marshall_index i ON i.transient_id = c
                     ORDER BY c)
        FROM archive.marshall_match m JOIN archive.target t USING (target_id)
        WHERE m.status = 'ambiguous' ORDER BY t.name
        """)
    cases = tuple(
        AmbiguousCase(int(tid), str(name), str(reason),
                      tuple(zip((int(c) for c in ids), (str(n) for n in names),
                                strict=True)))
        for tid, name, reason, ids, names in cur.fetchall())
    return MatchReport(int(counts.get("matched", 0)), int(counts.get("unmatched", 0)),
                       int(counts.get("ambiguous", 0)), transients, cases)
