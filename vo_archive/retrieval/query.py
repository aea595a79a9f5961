"""Selections -> SQL: which product versions a run or object download delivers.

Every query here applies the archive's one access filter
(:func:`vo_archive.access.visible` on the product's release date) and must run
on a connection from :func:`vo_archive.access.caller_connection`, so that an
anonymous caller sees public products only. No Flask here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    column,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from vo_archive.access import visible
from vo_archive.ingest.classify import normalise_name
from vo_archive.retrieval.params import ObjectSearch, Selection, VersionChoice
from vo_archive.vo.dali.errors import NotFoundFault, UsageFault
from vo_archive.vo.sky import cone_ranges

PRODUCT = table(
    "product", *(column(c) for c in (
        "product_id", "product_key", "instrument", "mode", "category", "level",
        "product_type", "description", "eso_phase3", "prodcatg", "filetype",
        "run_id", "target_id", "object", "night", "release_date")),
    schema="archive")
VERSION = table(
    "version", *(column(c) for c in (
        "version_id", "product_id", "version_no", "is_current", "filename",
        "storage_key", "file_size", "sha256", "md5", "procsoft", "reduction_mjd",
        "quality", "header", "hdus", "date_obs", "ra", "dec", "healpix29", "pos",
        "ingested_at")),
    schema="archive")
RUN = table("run", *(column(c) for c in (
    "run_id", "name", "eso_run", "programme", "instrument", "first_night",
    "last_night")), schema="archive")
TARGET = table("target", *(column(c) for c in (
    "target_id", "name", "ra", "dec", "classification", "redshift")),
    schema="archive")
ALIAS = table("target_alias", column("alias"), column("target_id"), schema="archive")
CLASSIFICATION = table("classification", *(column(c) for c in (
    "classification_id", "version_id", "sn_type", "sn_subtype", "redshift", "age",
    "rlap", "good", "problem")), schema="archive")


@dataclass(frozen=True, slots=True)
class ProductFile:
    """One selected product version: what it is and where its file lies."""

    product_id: int
    version_no: int
    is_current: bool
    filename: str
    storage_key: str
    file_size: int
    sha256: str
    md5: str
    instrument: str
    mode: str
    category: str
    level: str
    product_type: str
    description: str
    eso_phase3: str
    prodcatg: str | None
    run_name: str | None
    object: str | None
    night: date | None
    ra: float | None
    dec: float | None
    public: bool
    #: The newest stored classification of the file (1D science spectra), if any.
    classification: dict[str, Any] | None = None

    @property
    def classification_label(self) -> str:
        """Return the classification as a page shows it ("Ia z=0.050", ...)."""
        c = self.classification
        if not c:
            return ""
        if c.get("problem"):
            return "unreadable"
        if not c.get("good"):
            return "no match"
        z = f" z={c['z']:.3f}" if c.get("z") is not None else ""
        return f"{c.get('subtype') or c.get('type')}{z}"

    def as_json(self) -> dict[str, Any]:
        """Return the JSON form used by the pages and scripts."""
        return {
            "product_id": self.product_id, "version": self.version_no,
            "current": self.is_current, "filename": self.filename,
            "size": self.file_size, "sha256": self.sha256, "md5": self.md5,
            "instrument": self.instrument, "mode": self.mode,
            "category": self.category, "level": self.level,
            "product_type": self.product_type, "description": self.description,
            "eso_phase3": self.eso_phase3, "prodcatg": self.prodcatg,
            "run": self.run_name, "object": self.object,
            "night": self.night.isoformat() if self.night else None,
            "ra": self.ra, "dec": self.dec, "public": self.public,
            "url": f"/products/{self.product_id}/versions/{self.version_no}",
            "preview": f"/products/{self.product_id}/versions/{self.version_no}"
                       "/preview.png",
            "classification": ({**self.classification,
                                "label": self.classification_label}
                               if self.classification else None),
        }


@dataclass(frozen=True, slots=True)
class RunInfo:
    """An observing run as the pages show it."""

    run_id: int
    name: str
    eso_run: str
    programme: str
    instrument: str
    first_night: date
    last_night: date
    #: the archive's runs this stands for (several when named by an ESO run id)
    run_ids: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"name": self.name, "eso_run": self.eso_run,
                "programme": self.programme, "instrument": self.instrument,
                "first_night": self.first_night.isoformat(),
                "last_night": self.last_night.isoformat()}


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """A transient (or other target) found by name or alias."""

    target_id: int
    name: str
    ra: float | None
    dec: float | None
    classification: str | None
    redshift: float | None
    aliases: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"name": self.name, "ra": self.ra, "dec": self.dec,
                "classification": self.classification, "redshift": self.redshift,
                "aliases": list(self.aliases)}


_FILE_COLUMNS = (
    PRODUCT.c.product_id, VERSION.c.version_no, VERSION.c.is_current,
    VERSION.c.filename, VERSION.c.storage_key, VERSION.c.file_size,
    VERSION.c.sha256, VERSION.c.md5, PRODUCT.c.instrument, PRODUCT.c.mode,
    PRODUCT.c.category, PRODUCT.c.level, PRODUCT.c.product_type,
    PRODUCT.c.description, PRODUCT.c.eso_phase3, PRODUCT.c.prodcatg,
    RUN.c.name, func.coalesce(TARGET.c.name, PRODUCT.c.object), PRODUCT.c.night,
    VERSION.c.ra, VERSION.c.dec,
    func.coalesce(PRODUCT.c.release_date <= func.now(), false()),
    # the newest classification of the file: it is as visible as the file
    select(func.jsonb_build_object(
        "type", CLASSIFICATION.c.sn_type, "subtype", CLASSIFICATION.c.sn_subtype,
        "z", CLASSIFICATION.c.redshift, "age", CLASSIFICATION.c.age,
        "rlap", CLASSIFICATION.c.rlap, "good", CLASSIFICATION.c.good,
        "problem", CLASSIFICATION.c.problem))
    .where(CLASSIFICATION.c.version_id == VERSION.c.version_id)
    .order_by(CLASSIFICATION.c.classification_id.desc()).limit(1)
    .scalar_subquery(),
)


def _version_condition(sel: Selection) -> ColumnElement[bool]:
    if sel.version is VersionChoice.ALL:
        default: ColumnElement[bool] = true()
    elif sel.version is VersionChoice.NUMBER:
        default = VERSION.c.version_no == sel.version_no
    else:
        default = VERSION.c.is_current.is_(True)
    if not sel.products:
        return default
    alternatives = []
    for pid, vno in sel.products:
        if vno is None:
            alternatives.append(and_(PRODUCT.c.product_id == pid, default))
        else:
            alternatives.append(and_(PRODUCT.c.product_id == pid,
                                     VERSION.c.version_no == vno))
    return or_(*alternatives)


def _kind_conditions(sel: Selection) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for col, values in ((PRODUCT.c.level, sel.levels),
                        (PRODUCT.c.category, sel.categories),
                        (PRODUCT.c.instrument, sel.instruments),
                        (PRODUCT.c.mode, sel.modes),
                        (PRODUCT.c.product_type, sel.product_types),
                        (PRODUCT.c.night, sel.nights),
                        (RUN.c.name, sel.runs)):
        if values:
            conds.append(col.in_(list(values)))
    return conds


def _select_files(where: Sequence[ColumnElement[bool]]) -> Any:
    joined = (PRODUCT.join(VERSION, VERSION.c.product_id == PRODUCT.c.product_id)
              .outerjoin(RUN, RUN.c.run_id == PRODUCT.c.run_id)
              .outerjoin(TARGET, TARGET.c.target_id == PRODUCT.c.target_id))
    return (select(*_FILE_COLUMNS).select_from(joined)
            .where(visible(PRODUCT.c.release_date), *where)
            .order_by(PRODUCT.c.night, PRODUCT.c.instrument, VERSION.c.filename,
                      VERSION.c.version_no))


def _check_explicit(sel: Selection, rows: list[ProductFile], where: str) -> None:
    """Say which explicitly listed products the selection does not hold."""
    found = {(r.product_id, r.version_no) for r in rows}
    found_ids = {r.product_id for r in rows}
    missing = [f"{p}:{v}" if v else str(p) for p, v in sel.products
               if ((p, v) not in found if v else p not in found_ids)]
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise UsageFault(f"parameter PRODUCT: not in {where} (or not visible to you, "
                         f"or excluded by the other filters): {shown}", "PRODUCT")


def _has_visible_product(link: ColumnElement[bool]) -> ColumnElement[bool]:
    """Return "some product linked by ``link`` is visible to the caller"."""
    return exists().where(link, visible(PRODUCT.c.release_date))


#: An ESO run id: period, programme type, programme number and run letter.
ESO_RUN_ID = re.compile(r"\d{2,3}\.[A-Z]-\d{4}\([A-Z]\)\Z")


def find_run(conn: Connection, name: str) -> RunInfo:
    """Return the run called ``name``, or every run of an ESO run id.

    An ESO run id (``199.D-0143(G)``) stands for all the archive's runs
    observed under it: one :class:`RunInfo` spanning their nights.

    Raises
    ------
    NotFoundFault
        If there is no such run.
    """
    seen = _has_visible_product(PRODUCT.c.run_id == RUN.c.run_id)
    cols = (RUN.c.run_id, RUN.c.name, RUN.c.eso_run, RUN.c.programme,
            RUN.c.instrument, RUN.c.first_night, RUN.c.last_night)
    row = conn.execute(select(*cols).where(RUN.c.name == name, seen)).first()
    if row is not None:
        return RunInfo(*row, run_ids=(row[0],))
    if ESO_RUN_ID.match(name.strip()):
        rows = conn.execute(select(*cols).where(RUN.c.eso_run == name.strip(), seen)
                            .order_by(RUN.c.first_night)).all()
        if rows:
            return RunInfo(
                rows[0][0], name.strip(), name.strip(), rows[0][3],
                "+".join(sorted({r[4] for r in rows})),
                min(r[5] for r in rows), max(r[6] for r in rows),
                run_ids=tuple(r[0] for r in rows))
    raise NotFoundFault(f"no observing run {name!r}")


def run_files(conn: Connection, run: RunInfo, sel: Selection) -> list[ProductFile]:
    """Return the visible product versions of a run that ``sel`` selects."""
    where = [PRODUCT.c.run_id.in_(list(run.run_ids or (run.run_id,))),
             _version_condition(sel),
             *_kind_conditions(sel)]
    rows = [ProductFile(*r) for r in conn.execute(_select_files(where))]
    _check_explicit(sel, rows, f"run {run.name}")
    return rows


def list_runs(conn: Connection) -> list[dict[str, Any]]:
    """Return every run with counts and sizes of the products the caller may see."""
    counted = (
        select(PRODUCT.c.run_id,
               func.count().label("products"),
               func.count().filter(PRODUCT.c.level == "final").label("final"),
               func.count().filter(PRODUCT.c.level == "intermediate")
               .label("intermediate"),
               func.count().filter(PRODUCT.c.category == "calib").label("calib"),
               func.count().filter(PRODUCT.c.category == "science").label("science"),
               func.count().filter(PRODUCT.c.eso_phase3 == "yes").label("phase3"),
               func.count(func.distinct(PRODUCT.c.target_id)).label("targets"),
               func.coalesce(func.sum(VERSION.c.file_size), 0).label("bytes"))
        .select_from(PRODUCT.join(VERSION, and_(
            VERSION.c.product_id == PRODUCT.c.product_id,
            VERSION.c.is_current.is_(True))))
        .where(visible(PRODUCT.c.release_date))
        .group_by(PRODUCT.c.run_id).subquery())
    stmt = (select(RUN.c.name, RUN.c.eso_run, RUN.c.programme, RUN.c.instrument,
                   RUN.c.first_night, RUN.c.last_night,
                   *(func.coalesce(counted.c[k], 0).label(k) for k in (
                       "products", "final", "intermediate", "calib", "science",
                       "phase3", "targets", "bytes")))
            # only runs with a product the caller may see: the name and nights
            # of a run observed for proprietary data are proprietary too
            .select_from(RUN.join(counted, counted.c.run_id == RUN.c.run_id))
            .order_by(RUN.c.first_night.desc(), RUN.c.name))
    out = []
    for r in conn.execute(stmt).mappings():
        d = dict(r)
        d["first_night"] = d["first_night"].isoformat()
        d["last_night"] = d["last_night"].isoformat()
        d["bytes"] = int(d["bytes"])
        out.append(d)
    return out


#: The Marshall's view of a matched target (members only: the view shows rows
#: only in a transaction scoped to a caller who sees proprietary data).
MARSHALL_VIEW = table("marshall_classifications", *(column(c) for c in (
    "target_id", "marshall_id", "marshall_name", "status", "priority", "sn_type",
    "redshift", "phase_days", "classified_by", "classified_at", "n_classifications",
    "atels", "archive_type", "types_disagree")), schema="pessto")


def marshall_info(conn: Connection, target_id: int) -> dict[str, Any] | None:
    """Return the Marshall's data on a target, or None (not matched, or anonymous)."""
    row = conn.execute(select(MARSHALL_VIEW).where(
        MARSHALL_VIEW.c.target_id == target_id)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    del out["target_id"]
    if out["classified_at"] is not None:
        out["classified_at"] = out["classified_at"].isoformat()
    return out


def find_target(conn: Connection, name: str) -> TargetInfo:
    """Find a target by its name or an alias (compared in normalised form).

    Raises
    ------
    NotFoundFault
        If no target has this name or alias.
    """
    norm = normalise_name(name)
    if not norm:
        raise UsageFault("object name is empty")
    # a transient observed only in proprietary data is itself proprietary
    seen = _has_visible_product(PRODUCT.c.target_id == TARGET.c.target_id)
    row = conn.execute(
        select(TARGET.c.target_id, TARGET.c.name, TARGET.c.ra, TARGET.c.dec,
               TARGET.c.classification, TARGET.c.redshift)
        .select_from(TARGET.join(ALIAS, ALIAS.c.target_id == TARGET.c.target_id))
        .where(ALIAS.c.alias == norm, seen)).first()
    if row is None:
        row = conn.execute(
            select(TARGET.c.target_id, TARGET.c.name, TARGET.c.ra, TARGET.c.dec,
                   TARGET.c.classification, TARGET.c.redshift)
            .where(func.lower(TARGET.c.name) == name.strip().lower(), seen)).first()
    if row is None:
        raise NotFoundFault(f"no object called {name!r} (names and aliases are "
                            "compared without case, spaces, '-' and '_')")
    aliases = tuple(conn.execute(select(ALIAS.c.alias).where(
        ALIAS.c.target_id == row[0]).order_by(ALIAS.c.alias)).scalars())
    return TargetInfo(*row, aliases=aliases)


def cone_condition(ra: float, dec: float, radius_deg: float) -> ColumnElement[bool]:
    """Return the condition "version position within ``radius_deg`` of (ra, dec)".

    The HEALPix order-29 ranges of the cone select candidates through the
    B-tree index on ``healpix29``; pgSphere's exact great-circle distance then
    keeps the true matches.
    """
    ranges = cone_ranges(ra, dec, radius_deg)
    if not ranges:
        return false()
    in_ranges = or_(*(and_(VERSION.c.healpix29 >= lo, VERSION.c.healpix29 < hi)
                      for lo, hi in ranges))
    centre = func.spoint(func.radians(literal(ra)), func.radians(literal(dec)))
    distance = VERSION.c.pos.op("<->", return_type=VERSION.c.ra.type)(centre)
    return and_(in_ranges, distance <= func.radians(literal(radius_deg)))


def object_files(conn: Connection, target: TargetInfo, search: ObjectSearch,
                 sel: Selection) -> list[ProductFile]:
    """Return the visible product versions of a target (by identity and position)."""
    match: ColumnElement[bool] = PRODUCT.c.target_id == target.target_id
    if search.radius_arcsec > 0 and target.ra is not None and target.dec is not None:
        match = or_(match, cone_condition(target.ra, target.dec,
                                          search.radius_arcsec / 3600.0))
    where = [match, _version_condition(sel), *_kind_conditions(sel)]
    rows = [ProductFile(*r) for r in conn.execute(_select_files(where))]
    _check_explicit(sel, rows, f"the products of {target.name}")
    return rows


def list_targets(conn: Connection, query: str | None = None, limit: int = 500
                 ) -> list[dict[str, Any]]:
    """Return targets with the number of their visible products, by name."""
    counted = (select(PRODUCT.c.target_id, func.count().label("products"),
                      func.min(PRODUCT.c.night).label("first_night"),
                      func.max(PRODUCT.c.night).label("last_night"))
               .where(visible(PRODUCT.c.release_date))
               .group_by(PRODUCT.c.target_id).subquery())
    stmt = (select(TARGET.c.name, TARGET.c.ra, TARGET.c.dec,
                   TARGET.c.classification, counted.c.products,
                   counted.c.first_night, counted.c.last_night)
            .select_from(TARGET.join(counted,
                                     counted.c.target_id == TARGET.c.target_id))
            .order_by(TARGET.c.name).limit(limit))
    if query:
        norm = normalise_name(query)
        stmt = stmt.where(TARGET.c.target_id.in_(
            select(ALIAS.c.target_id).where(ALIAS.c.alias.contains(
                norm, autoescape=True))))
    out = []
    for r in conn.execute(stmt).mappings():
        d = dict(r)
        for k in ("first_night", "last_night"):
            d[k] = d[k].isoformat() if d[k] else None
        out.append(d)
    return out


def product_versions(conn: Connection, product_id: int) -> tuple[dict[str, Any],
                                                                  list[dict[str, Any]]]:
    """Return a visible product and all its versions, oldest first.

    Raises
    ------
    NotFoundFault
        If there is no such product or the caller may not see it.
    """
    prod = conn.execute(
        select(PRODUCT.c.product_id, PRODUCT.c.product_key, PRODUCT.c.instrument,
               PRODUCT.c.mode, PRODUCT.c.category, PRODUCT.c.level,
               PRODUCT.c.product_type, PRODUCT.c.description, PRODUCT.c.prodcatg,
               PRODUCT.c.eso_phase3, RUN.c.name.label("run"),
               func.coalesce(TARGET.c.name, PRODUCT.c.object).label("object"),
               PRODUCT.c.night)
        .select_from(PRODUCT.outerjoin(RUN, RUN.c.run_id == PRODUCT.c.run_id)
                     .outerjoin(TARGET, TARGET.c.target_id == PRODUCT.c.target_id))
        .where(PRODUCT.c.product_id == product_id,
               visible(PRODUCT.c.release_date))).mappings().first()
    if prod is None:
        raise NotFoundFault(f"no product {product_id} (or it is not public)")
    versions = conn.execute(
        select(VERSION.c.version_no, VERSION.c.is_current, VERSION.c.filename,
               VERSION.c.file_size, VERSION.c.sha256, VERSION.c.md5,
               VERSION.c.procsoft, VERSION.c.reduction_mjd, VERSION.c.quality,
               VERSION.c.ingested_at)
        .where(VERSION.c.product_id == product_id)
        .order_by(VERSION.c.version_no)).mappings().all()
    p = dict(prod)
    p["night"] = p["night"].isoformat() if p["night"] else None
    out = []
    for v in versions:
        d = dict(v)
        d["ingested_at"] = d["ingested_at"].isoformat()
        d["url"] = f"/products/{product_id}/versions/{d['version_no']}"
        d["preview"] = d["url"] + "/preview.png"
        out.append(d)
    return p, out
