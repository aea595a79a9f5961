"""Classification counters: how many spectra of each type, per run and per month.

The survey's "classification counters": the newest classification of the
current version of each classified product, counted by type, per observing run
and per month of observation. Spectra with no good match and files that could
not be read are counted under their own labels. Read through the published
views, so a caller counts only what they may see. No Flask here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

NO_MATCH = "no match"
UNREADABLE = "unreadable"

_LABEL = (f"CASE WHEN c.problem IS NOT NULL THEN '{UNREADABLE}' "
          f"WHEN NOT c.good THEN '{NO_MATCH}' ELSE c.sn_type END")
_BASE = ("FROM pessto.classifications c JOIN pessto.products p "
         "ON p.version_id = c.version_id WHERE c.is_latest")


@dataclass
class Counters:
    """Counts by type, per run and per month."""

    types: list[str] = field(default_factory=list)
    by_run: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    by_month: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    total: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the counters as JSON-ready values."""
        return {
            "types": self.types, "total": self.total,
            "by_run": [{"run": r, "counts": c, "total": sum(c.values())}
                       for r, c in self.by_run],
            "by_month": [{"month": m, "counts": c, "total": sum(c.values())}
                         for m, c in self.by_month],
        }


def _order(label: str) -> tuple[int, str]:
    return (1 if label in (NO_MATCH, UNREADABLE) else 0, label)


def count_classifications(conn: Connection) -> Counters:
    """Return the counters of the classifications the caller may see.

    ``conn`` must be scoped to the caller
    (:func:`vo_archive.access.caller_connection`).
    """
    out = Counters()
    groups: dict[str, dict[str, dict[str, int]]] = {"run": {}, "month": {}}
    rows = conn.execute(text(
        f"SELECT coalesce(p.run_name, '(no run)'), "
        f"coalesce(to_char(p.night, 'YYYY-MM'), '(no date)'), {_LABEL}, count(*) "
        f"{_BASE} GROUP BY 1, 2, 3")).all()
    for run, month, label, n in rows:
        for key, name in (("run", run), ("month", month)):
            counts = groups[key].setdefault(name, {})
            counts[label] = counts.get(label, 0) + n
        out.total[label] = out.total.get(label, 0) + n
    out.types = sorted(out.total, key=_order)
    out.total = {t: out.total[t] for t in out.types}
    out.by_run = sorted(groups["run"].items())
    out.by_month = sorted(groups["month"].items(), reverse=True)
    return out
