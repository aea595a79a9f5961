"""Transaction snapshots as PgQ stores them (``txid_snapshot`` text).

A snapshot ``xmin:xmax:xip,...`` says which transactions had committed when it
was taken: every txid below ``xmin``, and those in ``[xmin, xmax)`` that are not
in the in-progress list.  The replicator uses it to skip, after an initial
copy, the events that the copy already contains (anchors P6).  Txids are the
64-bit epoch-qualified ids (anchors P11).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A parsed transaction snapshot."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """Parse ``xmin:xmax:xip1,xip2`` text.

        Raises
        ------
        ValueError
            If the text is not a well-formed snapshot.
        """
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise ValueError(f"not a txid snapshot: {text!r}")
        xmin, xmax = int(parts[0]), int(parts[1])
        xip = frozenset(int(x) for x in parts[2].split(",") if x)
        if xmin > xmax or any(x < xmin or x >= xmax for x in xip):
            raise ValueError(f"inconsistent txid snapshot: {text!r}")
        return cls(xmin, xmax, xip)

    def visible(self, txid: int) -> bool:
        """Whether ``txid`` had committed when the snapshot was taken.

        Same rule as PostgreSQL's ``pg_visible_in_snapshot``.
        """
        if txid < self.xmin:
            return True
        if txid >= self.xmax:
            return False
        return txid not in self.xip
