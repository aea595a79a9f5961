"""Load generators for the fault tests, with a ledger of what committed (I3)."""

from __future__ import annotations

import random
import threading
import time

import psycopg2


class Writer(threading.Thread):
    """Insert, update and delete transients of its own name range until stopped.

    Every committed insert is recorded in ``committed``; a transaction that
    raised is not, so the ledger holds exactly what the master accepted.
    """

    def __init__(self, dsn: str, wid: int, seed: int = 0, pause: float = 0.0) -> None:
        super().__init__(daemon=True, name=f"writer-{wid}")
        self.dsn = dsn
        self.wid = wid
        self.rng = random.Random(seed * 1000 + wid)
        self.pause = pause
        self.halt = threading.Event()
        self.committed: set[str] = set()
        self.deleted: set[str] = set()
        self.errors: list[str] = []
        self.n = 0

    def run(self) -> None:
        conn = psycopg2.connect(self.dsn)
        try:
            while not self.halt.is_set():
                self.n += 1
                name = f"W{self.wid}-{self.n}"
                op = self.rng.random()
                live = sorted(self.committed - self.deleted)
                try:
                    with conn.cursor() as cur:
                        cur.execute(
                            "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                            "VALUES (%s, %s, %s)",
                            (name, self.rng.uniform(0, 359), self.rng.uniform(-89, 89)))
                        if live and op < 0.3:
                            cur.execute(
                                "UPDATE marshall.transients SET status = 'review', "
                                "discovery_mag = %s WHERE name = %s",
                                (self.rng.uniform(12, 22), self.rng.choice(live)),
                            )
                        victim = self.rng.choice(live) if live and op > 0.85 else None
                        if victim:
                            cur.execute(
                                "DELETE FROM marshall.transients WHERE name = %s",
                                (victim,),
                            )
                    conn.commit()
                    self.committed.add(name)
                    if victim:
                        self.deleted.add(victim)
                except psycopg2.Error as exc:
                    self.errors.append(str(exc))
                    conn.rollback()
                if self.pause:
                    time.sleep(self.pause)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self.halt.set()
        self.join(timeout=60)

    def expected(self) -> set[str]:
        """Names that must exist on master and slave."""
        return self.committed - self.deleted


def start_writers(dsn: str, n: int, pause: float = 0.0, seed: int = 0) -> list[Writer]:
    """Start ``n`` writers."""
    ws = [Writer(dsn, i, seed, pause) for i in range(n)]
    for w in ws:
        w.start()
    return ws


def stop_writers(ws: list[Writer]) -> set[str]:
    """Stop writers; return the union of names they left committed."""
    for w in ws:
        w.stop()
    out: set[str] = set()
    for w in ws:
        assert not w.errors, w.errors[:3]
        out |= w.expected()
    return out
