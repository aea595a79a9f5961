"""Ingest: from FITS files to recorded, versioned products in managed storage.

Files are read, classified and copied into a temporary folder by worker
processes (:mod:`vo_archive.ingest.prepare`); this module records them in
batches. For each batch:

1. files already archived with the same content are set aside as unchanged;
2. the final storage keys of the rest are written to the ingest journal and
   committed;
3. the files are moved into final storage and the file system is flushed;
4. runs, targets, products, versions and provenance are written, and the
   batch's journal rows deleted, in one transaction.

A crash between 2 and 4 leaves journaled files that no version names; they are
removed by :func:`vo_archive.ingest.recovery.recover`, which every ingest and
``vo-archive db check`` run first.

A storage that takes no more files (full, over quota, read-only) stops the
ingest at once (:class:`IngestStopped`): the batches recorded before stay, the
batch that met it is undone by that recovery, and a later run archives the
rest. A file that cannot be read is rejected and the ingest goes on.
"""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import psycopg2.extras
import psycopg2.sql
from sqlalchemy import Engine

from vo_archive.config import ReleasePolicy, Settings
from vo_archive.ingest.classify import Category, Level, is_standard_star, normalise_name
from vo_archive.ingest.prepare import Prepared, Rejected, die_with_parent, prepare_file
from vo_archive.ingest.recovery import SESSION_LOCK_CLASS, recover
from vo_archive.ingest.storage import Storage, StorageFull
from vo_archive.marshall.match import rematch_targets
from vo_archive.vo.sky import healpix29

log = logging.getLogger(__name__)

COMMIT_LOCK = (7355608, 2)
#: Fault injection for the crash tests: the process kills itself (SIGKILL) at
#: this point of the first batch that reaches it.
FAULT_POINT = os.environ.get("VO_ARCHIVE_INGEST_FAULT", "")
FITS_SUFFIXES = (".fits", ".fit", ".fts")


class Outcome(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """What ingest did with one file."""

    NEW = "new"
    NEW_VERSION = "new_version"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class FileResult:
    """The result for one file."""

    source: str
    outcome: Outcome
    reason: str | None = None
    product_id: int | None = None
    version_no: int | None = None
    is_current: bool | None = None


@dataclass
class IngestSummary:
    """Counts of an ingest and its per-file results."""

    results: list[FileResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """Return how many files had this outcome."""
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def rejected(self) -> list[FileResult]:
        """The rejected files with their reasons."""
        return [r for r in self.results if r.outcome is Outcome.REJECTED]

    def line(self) -> str:
        """One-line summary for people."""
        return (
            f"accepted {self.count(Outcome.NEW) + self.count(Outcome.NEW_VERSION)} "
            f"(new products {self.count(Outcome.NEW)}, "
            f"new versions {self.count(Outcome.NEW_VERSION)}), "
            f"unchanged {self.count(Outcome.UNCHANGED)}, "
            f"rejected {self.count(Outcome.REJECTED)}"
        )


class IngestStopped(Exception):
    """The ingest stopped before its end: the storage takes no more files.

    Parameters
    ----------
    cause
        The refused write: where, why, and the room left.
    summary
        The results of the files recorded before the ingest stopped.
    """

    def __init__(self, cause: StorageFull, summary: IngestSummary) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.summary = summary


def _fault(point: str) -> None:
    if point == FAULT_POINT:
        log.warning("fault injection: killing the ingest at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


def iter_fits_paths(paths: Iterable[str | Path]) -> Iterator[str]:
    """Yield files named by ``paths``, walking folders for FITS files (sorted)."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(FITS_SUFFIXES):
                        yield os.path.join(root, name)
        else:
            yield str(path)


def release_date(policy: ReleasePolicy, level: Level, product_type: str,
                 night: date | None) -> datetime | None:
    """Return when a product becomes public under ``policy`` (None: never)."""
    if product_type in policy.never_public_types or night is None:
        return None
    overrides = dict(policy.product_type_days)
    if product_type in overrides:
        days: int | None = overrides[product_type]
    else:
        days = {
            Level.FINAL: policy.final_days,
            Level.INTERMEDIATE: policy.intermediate_days,
            Level.RAW: policy.raw_days,
        }[level]
    if days is None:
        return None
    start = datetime.combine(night + timedelta(days=1), time(12, 0), tzinfo=UTC)
    return start + timedelta(days=days)


def _procsoft_tuple(procsoft: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", procsoft or ""))


def version_rank(rmjd: int | None, quality: str | None, procsoft: str | None,
                 version_no: int) -> tuple[Any, ...]:
    """Order versions: the highest rank is current (data model §7).

    Highest reduction MJD first, then a 'Final' over a 'Rapid' reduction, then
    the newest pipeline version, then the later ingest.
    """
    return (
        rmjd if rmjd is not None else -1,
        1 if (quality or "").lower() == "final" else 0,
        _procsoft_tuple(procsoft),
        version_no,
    )


def run_label(first: date, last: date, instrument: str) -> str:
    """Return the pipeline's batch label ``{mon}{yy}_d{DD}to{DD}_{instrument}``."""
    mon = first.strftime("%b").lower()
    return f"{mon}{first:%y}_d{first:%d}to{last:%d}_{instrument.lower()}"


def _spoint(ra: float | None, dec: float | None) -> str | None:
    if ra is None or dec is None:
        return None
    return f"({ra!r}d, {dec!r}d)"


#: Characters that COPY's text format gives a meaning (written as escapes).
_COPY_SPECIAL = re.compile(r"[\\\n\r\t]")
_FLOAT_WORDS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _copy_text(value: str) -> str:
    if _COPY_SPECIAL.search(value) is None:  # nearly always: no copy
        return value
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


def _copy_float(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else _FLOAT_WORDS[value]


#: COPY text of each type, as psycopg2 adapts it in a literal: ``repr`` of a
#: float, ISO 8601 dates and times, ``t``/``f``.
_COPY_FORMATS: dict[type, Callable[[Any], str]] = {
    str: _copy_text, int: int.__repr__, float: _copy_float, type(None): lambda _: "\\N",
    bool: lambda b: "t" if b else "f", datetime: datetime.isoformat,
    date: date.isoformat,
}


def _copy_field(value: object) -> str:
    """Return one value as a field of PostgreSQL's COPY text format."""
    fmt = _COPY_FORMATS.get(type(value))
    if fmt is not None:
        return fmt(value)
    for kind in (bool, str, float, int, datetime, date):  # subclasses
        if isinstance(value, kind):
            return _COPY_FORMATS[kind](value)
    raise TypeError(f"no COPY form for {type(value).__name__}")


def _copy_rows(cur: Any, table: str, columns: tuple[str, ...],
               rows: Iterable[tuple[object, ...]]) -> None:
    """Write rows into ``archive.<table>`` with one COPY.

    COPY costs both sides less than a many-row INSERT: no statement text to
    build (mogrify) and to parse, no plan.
    """
    buf = io.StringIO()
    buf.writelines("\t".join(map(_copy_field, row)) + "\n" for row in rows)
    buf.seek(0)
    statement = psycopg2.sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg2.sql.Identifier("archive", table),
        psycopg2.sql.SQL(", ").join(map(psycopg2.sql.Identifier, columns)))
    cur.copy_expert(statement, buf)


VERSION_COLUMNS = (
    "version_id", "product_id", "version_no", "is_current", "filename", "storage_key",
    "file_size", "sha256", "md5", "procsoft", "reduction_mjd", "quality", "data_rel",
    "header", "hdus", "date_obs", "mjd_obs", "mjd_end", "exptime", "ra", "dec",
    "healpix29", "pos", "footprint", "fov", "naxis1", "naxis2", "pixscale", "psf_fwhm",
    "em_min", "em_max", "em_res_power", "em_xel", "filter", "disperser", "slit",
    "bunit", "snr", "prog_id", "ob_id",
)
PROVENANCE_COLUMNS = ("version_id", "keyword", "relation", "ref_filename")


def _spoly(corners: list[tuple[float, float]] | None) -> str | None:
    if not corners:
        return None
    return "{" + ",".join(f"({a!r}d, {d!r}d)" for a, d in corners) + "}"


class Ingestor:
    """Records FITS files in the archive; use as a context manager.

    Parameters
    ----------
    settings
        Archive settings (storage folder, release policy, batch size).
    engine
        Engine of the archive database.
    run_name
        Put every file in this observing run instead of deriving the run.
    workers
        Worker processes for reading and checksumming; 1 reads in-process.
    progress
        Called with (files done, files rejected so far) after every batch.
    """

    def __init__(self, settings: Settings, engine: Engine, run_name: str | None = None,
                 workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.storage = Storage(settings.storage_dir)
        self.run_name = run_name
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.progress = progress
        self._session_conn: Any = None
        self.session_id = 0
        self._pool: Executor | None = None

    # -- session ------------------------------------------------------------
    def __enter__(self) -> Ingestor:
        """Start a session: recover dead sessions, then take a session lock."""
        self.storage.make_root()
        if self.workers > 1:
            # Reader processes die with this process (PR_SET_PDEATHSIG), so a
            # killed ingest leaves no child holding copies of its database
            # connections, and with them its session lock.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("fork"),
                initializer=die_with_parent)
        # The session connection lives as long as the session and no longer:
        # detached from the pool, so closing it ends the backend and with it
        # the session lock, and in autocommit, so it never sits idle in a
        # transaction while files are read.
        fairy = self.engine.raw_connection()
        fairy.detach()
        conn: Any = fairy.dbapi_connection
        try:
            conn.autocommit = False
            recover(conn, self.storage)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT nextval('archive.ingest_session_seq')")
                self.session_id = int(cur.fetchone()[0])
                cur.execute("SELECT pg_advisory_lock(%s, %s)",
                            (SESSION_LOCK_CLASS, self.session_id))
        except BaseException:
            conn.close()
            self.__exit__()
            raise
        self._session_conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        """End the session: stop the readers, drop its files, close its connection."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self.storage.remove_session(self.session_id)
        if self._session_conn is not None:
            self._session_conn.close()
            self._session_conn = None

    # -- public API ---------------------------------------------------------
    def ingest_paths(self, paths: Iterable[str | Path]) -> IngestSummary:
        """Ingest files and folders; return the per-file results.

        Reading and checksumming of the next batch (worker processes) overlaps
        with recording the current one (this process and the database).

        Raises
        ------
        IngestStopped
            When the storage takes no more files; it holds the results so far.
        """
        summary = IngestSummary()
        pending: Callable[[], list[Prepared | Rejected]] | None = None
        try:
            for batch in self._batches(paths):
                upcoming = self._prepare(batch)
                if pending is not None:
                    self._record_batch(pending(), summary)
                pending = upcoming
            if pending is not None:
                self._record_batch(pending(), summary)
        except StorageFull as full:
            # every later file would meet the same full disk: stop here (the
            # caller reports it, once)
            log.info("ingest stopped after %d files: %s", len(summary.results), full)
            raise IngestStopped(full, summary) from full
        return summary

    def _batches(self, paths: Iterable[str | Path]) -> Iterator[list[str]]:
        batch: list[str] = []
        for path in iter_fits_paths(paths):
            batch.append(path)
            if len(batch) >= self.settings.ingest_batch:
                yield batch
                batch = []
        if batch:
            yield batch

    def ingest_bytes(self, filename: str, data: bytes) -> FileResult:
        """Ingest one file given as bytes (pipeline uploads); same checks as files.

        Raises
        ------
        StorageFull
            When the storage takes no more files (nothing of this one is kept).
        """
        if (not filename or os.path.basename(filename) != filename
                or filename in (".", "..") or "\x00" in filename):
            # The name becomes part of a path in the session folder.
            return FileResult(filename, Outcome.REJECTED,
                              "the file name must be a plain base name")
        summary = IngestSummary()
        item = prepare_file(filename, str(self.storage.root), self.session_id,
                            data=data, filename=filename)
        self._record([item], summary)
        return summary.results[0]

    # -- batches ------------------------------------------------------------
    def _prepare(self, paths: list[str]) -> Callable[[], list[Prepared | Rejected]]:
        """Start reading a batch; return a function that waits for the results."""
        root = str(self.storage.root)
        if self._pool is None:
            return lambda: [prepare_file(p, root, self.session_id) for p in paths]
        chunk = max(1, len(paths) // (self.workers * 4))
        results = self._pool.map(prepare_file, paths, [root] * len(paths),
                                 [self.session_id] * len(paths), chunksize=chunk)
        return lambda: list(results)

    def _record_batch(self, items: list[Prepared | Rejected],
                      summary: IngestSummary) -> None:
        self._record(items, summary)
        if self.progress is not None:
            self.progress(len(summary.results), summary.count(Outcome.REJECTED))

    def _record(self, items: list[Prepared | Rejected], summary: IngestSummary) -> None:
        results: dict[int, FileResult] = {}
        ready: list[tuple[int, Prepared]] = []
        for i, item in enumerate(items):
            if isinstance(item, Rejected):
                results[i] = FileResult(item.source, Outcome.REJECTED, item.reason)
            else:
                ready.append((i, item))
        if ready:
            results.update(self._commit(ready))
        summary.results.extend(results[i] for i in range(len(items)))
        for r in results.values():
            if r.outcome is Outcome.REJECTED:
                log.info("rejected %s: %s", r.source, r.reason)

    def _commit(self, ready: list[tuple[int, Prepared]]) -> dict[int, FileResult]:
        conn = self.engine.raw_connection()
        try:
            return self._commit_on(conn, ready)
        finally:
            conn.close()

    def _commit_on(self, conn: Any, ready: list[tuple[int, Prepared]]
                   ) -> dict[int, FileResult]:
        out: dict[int, FileResult] = {}
        cur = conn.cursor()
        # 1. set aside files whose content is already archived as that product
        cur.execute(
            """
            SELECT p.instrument, p.product_key, v.sha256, p.product_id, v.version_no,
                   v.is_current
            FROM archive.version v JOIN archive.product p USING (product_id)
            WHERE v.sha256 = ANY(%s)
            """,
            ([it.stored.sha256 for _, it in ready],),
        )
        known = {(r[0], r[1], r[2]): r[3:] for r in cur.fetchall()}
        fresh: list[tuple[int, Prepared]] = []
        seen: dict[tuple[str, str, str], int] = {}
        for i, it in ready:
            key = (it.cls.instrument.value, it.cls.product_key, it.stored.sha256)
            if key in known:
                pid, vno, cur_flag = known[key]
                out[i] = FileResult(
                    it.source, Outcome.UNCHANGED, None, pid, vno, cur_flag
                )
                self.storage.discard(it.stored)
            elif key in seen:
                out[i] = FileResult(it.source, Outcome.UNCHANGED,
                                    "same file twice in this ingest")
                self.storage.discard(it.stored)
            else:
                seen[key] = i
                fresh.append((i, it))
        conn.commit()
        if not fresh:
            return out
        # 2. journal the keys, 3. place the files and flush
        keys = sorted({it.stored.storage_key for _, it in fresh})
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO archive.ingest_journal (storage_key, session_id) VALUES %s "
            "ON CONFLICT DO NOTHING",
            [(k, self.session_id) for k in keys],
        )
        conn.commit()
        _fault("after_journal")
        for n, (_, it) in enumerate(fresh):
            self.storage.place(it.stored)
            if n == len(fresh) // 2:
                _fault("mid_place")
        self.storage.flush()
        # 4. record everything in one transaction
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", COMMIT_LOCK)
        out.update(self._write_rows(cur, fresh))
        cur.execute(
            "DELETE FROM archive.ingest_journal WHERE session_id = %s "
            "AND storage_key = ANY(%s)",
            (self.session_id, keys),
        )
        _fault("before_commit")
        conn.commit()
        _fault("after_commit")
        return out

    # -- rows -----------------------------------------------------------------
    def _write_rows(self, cur: Any, fresh: list[tuple[int, Prepared]]
                    ) -> dict[int, FileResult]:
        fresh = sorted(fresh, key=lambda x: (x[1].facts.night or date.min, x[0]))
        run_ids = self._resolve_runs(cur, [it for _, it in fresh])
        target_ids = self._resolve_targets(cur, [it for _, it in fresh])
        # products
        prod_rows = []
        for _, it in fresh:
            c, f = it.cls, it.facts
            prod_rows.append((
                c.product_key, c.instrument.value, c.mode.value, c.category.value,
                c.level.value, c.product_type, c.description, c.phase3.value,
                c.prodcatg, c.filetype, run_ids[id(it)], target_ids.get(id(it)),
                f.object, f.night,
                release_date(self.settings.policy, c.level, c.product_type, f.night),
            ))
        psycopg2.extras.execute_values(
            cur,
            """
            INSERT INTO archive.product (product_key, instrument, mode, category, level,
                product_type, description, eso_phase3, prodcatg, filetype, run_id,
                target_id, object, night, release_date)
            VALUES %s ON CONFLICT (instrument, product_key) DO NOTHING
            """,
            prod_rows,
        )
        cur.execute(
            """
            SELECT p.instrument, p.product_key, p.product_id
            FROM archive.product p
            JOIN unnest(%s::text[], %s::text[]) AS k(instrument, product_key)
              USING (instrument, product_key)
            """,
            ([it.cls.instrument.value for _, it in fresh],
             [it.cls.product_key for _, it in fresh]),
        )
        pid_of = {(r[0], r[1]): r[2] for r in cur.fetchall()}
        pids = sorted(set(pid_of.values()))
        cur.execute(
            """
            SELECT product_id, version_id, version_no, reduction_mjd, quality, procsoft,
                   is_current
            FROM archive.version WHERE product_id = ANY(%s)
            """,
            (pids,),
        )
        existing: dict[int, list[tuple[Any, ...]]] = {}
        for row in cur.fetchall():
            existing.setdefault(row[0], []).append(row)
        # versions: numbers and the current flag, product by product
        hp = healpix29(
            [it.facts.ra if it.facts.ra is not None else 0.0 for _, it in fresh],
            [it.facts.dec if it.facts.dec is not None else 0.0 for _, it in fresh],
        )
        plans: list[tuple[int, Prepared, int, int, bool]] = []
        by_product: dict[int, list[tuple[int, Prepared, int]]] = {}
        for n, (i, it) in enumerate(fresh):
            pid = pid_of[(it.cls.instrument.value, it.cls.product_key)]
            by_product.setdefault(pid, []).append((i, it, n))
        demote: list[int] = []
        for pid, news in by_product.items():
            old = existing.get(pid, [])
            next_no = max((r[2] for r in old), default=0) + 1
            ranks: list[tuple[tuple[Any, ...], str, int]] = [
                (version_rank(r[3], r[4], r[5], r[2]), "old", r[1]) for r in old
            ]
            numbered = []
            for i, it, n in news:
                vno = next_no
                next_no += 1
                numbered.append((i, it, n, vno))
                ranks.append((version_rank(it.cls.reduction_mjd, it.facts.quality,
                                           it.facts.procsoft, vno), "new", vno))
            best = max(ranks)
            old_current = next((r[1] for r in old if r[6]), None)
            for i, it, _n, vno in numbered:
                is_cur = best[1] == "new" and best[2] == vno
                plans.append((i, it, pid, vno, is_cur))
            if best[1] == "new" and old_current is not None:
                demote.append(old_current)
        if demote:
            cur.execute("UPDATE archive.version SET is_current = false "
                        "WHERE version_id = ANY(%s)", (demote,))
        index_of = {i: n for n, (i, _) in enumerate(fresh)}
        # Version ids are drawn in plan order, as INSERT ... RETURNING would
        # draw them, so that COPY can write the rows and their provenance.
        cur.execute("SELECT nextval(pg_get_serial_sequence('archive.version', "
                    "'version_id')) FROM generate_series(1, %s)", (len(plans),))
        version_ids = [r[0] for r in cur.fetchall()]
        version_rows = []
        prov_rows = []
        out: dict[int, FileResult] = {}
        for vid, (i, it, pid, vno, is_cur) in zip(version_ids, plans, strict=True):
            f, s = it.facts, it.stored
            has_pos = f.ra is not None and f.dec is not None
            version_rows.append((
                vid, pid, vno, is_cur, it.filename, s.storage_key, s.size, s.sha256,
                s.md5, f.procsoft, it.cls.reduction_mjd, f.quality, f.data_rel,
                it.header_json, it.hdus, f.date_obs, f.mjd_obs, f.mjd_end, f.exptime,
                f.ra, f.dec, int(hp[index_of[i]]) if has_pos else None,
                _spoint(f.ra, f.dec), _spoly(f.corners), f.fov, f.naxis1, f.naxis2,
                f.pixscale, f.psf_fwhm, f.em_min, f.em_max, f.em_res_power, f.em_xel,
                f.filter, f.disperser, f.slit, f.bunit, f.snr, f.prog_id, f.ob_id,
            ))
            for keyword, relation, ref in f.provenance:
                prov_rows.append((vid, keyword, relation, ref))
            outcome = Outcome.NEW if vno == 1 else Outcome.NEW_VERSION
            out[i] = FileResult(it.source, outcome, None, pid, vno, is_cur)
        _copy_rows(cur, "version", VERSION_COLUMNS, version_rows)
        if prov_rows:
            _copy_rows(cur, "provenance", PROVENANCE_COLUMNS, prov_rows)
        return out

    def _resolve_targets(self, cur: Any, items: list[Prepared]) -> dict[int, int]:
        """Find or create the target of each science product, by name alias."""
        wanted: dict[str, Prepared] = {}
        for it in items:
            obj = it.facts.object
            if (it.cls.category is Category.SCIENCE and obj
                    and not is_standard_star(obj) and it.facts.ra is not None):
                wanted.setdefault(normalise_name(obj), it)
        if not wanted:
            return {}
        cur.execute("SELECT alias, target_id FROM archive.target_alias "
                    "WHERE alias = ANY(%s)", (list(wanted),))
        found = dict(cur.fetchall())
        created: list[int] = []
        for alias, it in wanted.items():
            if alias in found:
                continue
            f = it.facts
            if f.ra is None or f.dec is None:
                raise AssertionError(f"{it.source}: a target needs a position")
            cur.execute(
                """
                INSERT INTO archive.target (name, ra, dec, healpix29)
                VALUES (%s,%s,%s,%s)
                ON CONFLICT (name) DO UPDATE SET updated_at = now()
                RETURNING target_id
                """,
                (f.object, f.ra, f.dec, int(healpix29(f.ra, f.dec))),
            )
            tid = cur.fetchone()[0]
            cur.execute("INSERT INTO archive.target_alias VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING", (alias, tid))
            found[alias] = tid
            created.append(tid)
        # A new target is matched with the Marshall's transients at once (#19).
        rematch_targets(cur, created)
        return {
            id(it): found[normalise_name(it.facts.object)]
            for it in items
            if it.facts.object and normalise_name(it.facts.object) in found
            and it.cls.category is Category.SCIENCE
        }

    def _resolve_runs(self, cur: Any, items: list[Prepared]) -> dict[int, int]:
        """Place each product in its observing run, creating or extending runs."""
        out: dict[int, int] = {}
        known: dict[tuple[str, str, date], int] = {}
        for it in items:
            eso_run = it.facts.prog_id or "UNKNOWN"
            programme = eso_run.split("(")[0].strip() or "UNKNOWN"
            night = it.facts.night or date(1970, 1, 1)
            inst = it.cls.instrument.value
            if (eso_run, inst, night) in known:
                out[id(it)] = known[(eso_run, inst, night)]
                continue
            if self.run_name:
                out[id(it)] = self._explicit_run(cur, self.run_name, eso_run, programme,
                                                 inst, night)
                known[(eso_run, inst, night)] = out[id(it)]
                continue
            cur.execute(
                """
                SELECT run_id, first_night, last_night FROM archive.run
                WHERE NOT explicit AND eso_run = %s AND instrument = %s
                  AND first_night - 1 <= %s AND last_night + 1 >= %s
                ORDER BY first_night
                """,
                (eso_run, inst, night, night),
            )
            rows = cur.fetchall()
            if not rows:
                cur.execute(
                    """
                    INSERT INTO archive.run (name, eso_run, programme, instrument,
                                             first_night, last_night)
                    VALUES (%s, %s, %s, %s, %s, %s) RETURNING run_id
                    """,
                    (self._free_name(cur, run_label(night, night, inst), eso_run),
                     eso_run, programme, inst, night, night),
                )
                out[id(it)] = known[(eso_run, inst, night)] = cur.fetchone()[0]
                continue
            keep, first, last = rows[0]
            for other, o_first, o_last in rows[1:]:
                # the night bridges two blocks: merge them into one run
                cur.execute("UPDATE archive.product SET run_id = %s WHERE run_id = %s",
                            (keep, other))
                cur.execute("DELETE FROM archive.run WHERE run_id = %s", (other,))
                first, last = min(first, o_first), max(last, o_last)
            new_first, new_last = min(first, night), max(last, night)
            if (new_first, new_last) != (rows[0][1], rows[0][2]) or len(rows) > 1:
                cur.execute(
                    "UPDATE archive.run SET first_night = %s, last_night = %s, "
                    "name = %s WHERE run_id = %s",
                    (new_first, new_last,
                     self._free_name(cur, run_label(new_first, new_last, inst), eso_run,
                                     keep),
                     keep),
                )
            out[id(it)] = keep
            known[(eso_run, inst, night)] = keep
        return out

    @staticmethod
    def _free_name(
        cur: Any, label: str, eso_run: str, run_id: int | None = None
    ) -> str:
        cur.execute("SELECT run_id FROM archive.run WHERE name = %s", (label,))
        row = cur.fetchone()
        if row is None or row[0] == run_id:
            return label
        suffix = re.sub(r"[^A-Za-z0-9]+", "", eso_run)
        return f"{label}_{suffix}"

    @staticmethod
    def _explicit_run(cur: Any, name: str, eso_run: str, programme: str, inst: str,
                      night: date) -> int:
        cur.execute(
            """
            INSERT INTO archive.run (name, eso_run, programme, instrument, first_night,
                                     last_night, explicit)
            VALUES (%s, %s, %s, %s, %s, %s, true)
            ON CONFLICT (name) DO UPDATE
              SET first_night = least(archive.run.first_night, excluded.first_night),
                  last_night = greatest(archive.run.last_night, excluded.last_night)
            RETURNING run_id
            """,
            (name, eso_run, programme, inst, night, night),
        )
        return int(cur.fetchone()[0])
