"""Re-apply the release policy to products already in the archive.

Release dates are computed at ingest from ``[policy]`` (see
:func:`vo_archive.ingest.pipeline.release_date`). When the policy changes, the
products already archived keep their old dates until this module recomputes
them with the same function, so that ingest and re-application always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg2.extras
from sqlalchemy import Engine

from vo_archive.config import ReleasePolicy
from vo_archive.ingest.classify import Level
from vo_archive.ingest.pipeline import release_date

BATCH = 5000


@dataclass
class PolicyChange:
    """What re-applying the policy changed (or would change)."""

    checked: int = 0
    changed: int = 0
    made_public: int = 0
    made_proprietary: int = 0
    examples: list[tuple[int, datetime | None, datetime | None]] = field(
        default_factory=list)


def _public(when: datetime | None, now: datetime) -> bool:
    return when is not None and when <= now


def apply_policy(engine: Engine, policy: ReleasePolicy, dry_run: bool = False
                 ) -> PolicyChange:
    """Recompute every product's release date under ``policy``.

    Parameters
    ----------
    engine
        Engine of the archive database.
    policy
        The release policy to apply.
    dry_run
        Count what would change without writing.

    Returns
    -------
    PolicyChange
        Counts of changed products and of those whose visibility flips.
    """
    out = PolicyChange()
    now = datetime.now(UTC)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # Lock out concurrent ingests' commits (same lock as the ingest commit
        # step), so a product ingested meanwhile is not left with an old rule.
        cur.execute("SELECT pg_advisory_xact_lock(7355608, 2)")
        cur.execute("SELECT product_id, level, product_type, night, release_date "
                    "FROM archive.product ORDER BY product_id")
        updates: list[tuple[int, datetime | None]] = []
        for pid, level, ptype, night, old in cur.fetchall():
            out.checked += 1
            new = release_date(policy, Level(level), ptype, night)
            if new == old:
                continue
            out.changed += 1
            if _public(new, now) and not _public(old, now):
                out.made_public += 1
            elif _public(old, now) and not _public(new, now):
                out.made_proprietary += 1
            if len(out.examples) < 10:
                out.examples.append((pid, old, new))
            updates.append((pid, new))
        if not dry_run and updates:
            for i in range(0, len(updates), BATCH):
                psycopg2.extras.execute_values(
                    cur,
                    "UPDATE archive.product p SET release_date = u.release "
                    "FROM (VALUES %s) AS u(product_id, release) "
                    "WHERE p.product_id = u.product_id",
                    updates[i:i + BATCH], template="(%s, %s::timestamptz)")
        raw.commit()
    finally:
        raw.close()
    return out
