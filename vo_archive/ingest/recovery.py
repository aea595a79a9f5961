"""Recovery after crashed ingests, and the storage/database consistency check."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vo_archive.ingest.storage import Storage

log = logging.getLogger(__name__)

#: Advisory-lock class of ingest sessions: (SESSION_LOCK_CLASS, session_id).
SESSION_LOCK_CLASS = 7355609


@dataclass
class CheckReport:
    """What ``db check`` found and did."""

    dead_sessions: list[int] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    bad_checksums: list[str] = field(default_factory=list)
    wrong_sizes: list[str] = field(default_factory=list)
    versions_checked: int = 0

    @property
    def ok(self) -> bool:
        """Whether every recorded file is present and intact."""
        return not (self.missing_files or self.bad_checksums or self.wrong_sizes)


def _session_alive(cur: Any, session_id: int) -> bool:
    cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (SESSION_LOCK_CLASS, session_id))
    got = cur.fetchone()[0]
    if got:
        cur.execute(
            "SELECT pg_advisory_unlock(%s, %s)", (SESSION_LOCK_CLASS, session_id)
        )
        return False
    return True


def recover(raw_conn: Any, storage: Storage, report: CheckReport | None = None
            ) -> CheckReport:
    """Clean up after ingest sessions that died (kill -9, power loss).

    Files a dead session journaled but no version names are removed, with the
    session's temporary folder; the journal rows go in the same transaction.
    The journal is locked against new entries meanwhile, so a live session
    cannot journal a key between the check and the removal.

    Parameters
    ----------
    raw_conn
        A psycopg2 connection (not in autocommit mode).
    storage
        The archive's storage.
    """
    report = report or CheckReport()
    with raw_conn.cursor() as cur:
        cur.execute("LOCK TABLE archive.ingest_journal IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("SELECT DISTINCT session_id FROM archive.ingest_journal")
        journal_sessions = {r[0] for r in cur.fetchall()}
        tmp_sessions = storage.tmp_session_ids()
        for sid in sorted(journal_sessions | tmp_sessions):
            if _session_alive(cur, sid):
                continue
            report.dead_sessions.append(sid)
            cur.execute(
                """
                SELECT j.storage_key FROM archive.ingest_journal j
                WHERE j.session_id = %s
                  AND NOT EXISTS (SELECT 1 FROM archive.version v
                                  WHERE v.storage_key = j.storage_key)
                  AND NOT EXISTS (SELECT 1 FROM archive.ingest_journal o
                                  WHERE o.storage_key = j.storage_key
                                    AND o.session_id <> j.session_id)
                """,
                (sid,),
            )
            for (key,) in cur.fetchall():
                if storage.remove_unreferenced(key):
                    report.removed_files.append(key)
            cur.execute(
                "DELETE FROM archive.ingest_journal WHERE session_id = %s", (sid,)
            )
            storage.remove_session(sid)
    raw_conn.commit()
    if report.dead_sessions:
        log.warning("recovered %d dead ingest session(s), removed %d file(s)",
                    len(report.dead_sessions), len(report.removed_files))
    return report


def check(raw_conn: Any, storage: Storage, deep: bool = False,
          remove_orphans: bool = True) -> CheckReport:
    """Check that storage and database agree, after recovering dead sessions.

    Every version's file must exist with its recorded size (and, with ``deep``,
    its SHA-256); files in storage that no version and no live session names are
    orphans and are removed. The storage is listed once (one listing of an
    object store, not a request per file).
    """
    report = recover(raw_conn, storage)
    with raw_conn.cursor() as cur:
        cur.execute("LOCK TABLE archive.ingest_journal IN SHARE ROW EXCLUSIVE MODE")
        # listed under the lock: no session records (or journals) meanwhile
        sizes = storage.object_sizes()
        cur.execute(
            "SELECT storage_key, file_size, sha256, filename FROM archive.version"
        )
        referenced: set[str] = set()
        for key, size, sha, filename in cur:
            report.versions_checked += 1
            referenced.add(key)
            actual = sizes.get(key)
            if actual is None:
                report.missing_files.append(f"{filename} ({key})")
                continue
            if actual != size:
                report.wrong_sizes.append(f"{filename} ({key})")
            elif deep and storage.sha256_of(key) != sha:
                report.bad_checksums.append(f"{filename} ({key})")
        cur.execute("SELECT storage_key FROM archive.ingest_journal")
        referenced.update(r[0] for r in cur.fetchall())
        for key in sizes:
            if key not in referenced:
                if remove_orphans:
                    storage.remove_unreferenced(key)
                report.removed_files.append(key)
    raw_conn.commit()
    return report
