"""``/moc``: the sky coverage of the products the caller may see, as a MOC 2.0.

Footprints (or positions) of the current visible versions become HEALPix cells
at order :data:`MOC_ORDER` (inclusive), normalised by mocpy to canonical form
(MOC 2.0 §3.1), and written as FITS (NUNIQ, §4.3.1 and §6), JSON (App. D) or
ASCII. The MOC is computed once per state of the holdings (count and newest
version of what the caller sees) and kept under ``settings.cache_dir/moc``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from flask import Blueprint, Response, g
from sqlalchemy import text

from vo_archive import __version__, web
from vo_archive.access import current_caller
from vo_archive.vo.dali.errors import FaultStyle, UsageFault
from vo_archive.vo.sky import unit_vectors
from vo_archive.vo.votable import spherical_pairs

bp = Blueprint("moc", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

#: Order of the coverage cells (order 12: 52 arcsec, enough for PESSTO fields).
MOC_ORDER = 12
MEDIA_TYPES = {"fits": "application/fits", "json": "application/json",
               "ascii": "text/plain"}


def coverage_cells(footprints: list[str | None], points: list[tuple[float, float]],
                   order: int = MOC_ORDER) -> Any:
    """Return the MOC (mocpy) of footprints (pgSphere spoly text) and positions."""
    # healpy and mocpy load matplotlib and more: import them on first use only
    import healpy
    from mocpy import MOC

    nside = 1 << order
    cells: list[np.ndarray] = []
    for fp in footprints:
        pairs = spherical_pairs(fp)
        if not pairs:
            continue
        verts = unit_vectors(pairs[0::2], pairs[1::2])
        try:
            cells.append(healpy.query_polygon(nside, verts, inclusive=True, nest=True))
        except (ValueError, RuntimeError):  # degenerate: fall back to the vertices
            cells.append(healpy.vec2pix(nside, verts[:, 0], verts[:, 1], verts[:, 2],
                                        nest=True))
    if points:
        ra, dec = np.array(points).T
        cells.append(healpy.ang2pix(nside, ra, dec, nest=True, lonlat=True))
    ipix = np.unique(np.concatenate(cells)) if cells else np.array([], dtype=np.int64)
    return MOC.from_healpix_cells(ipix.astype(np.uint64),
                                  np.full(ipix.size, order, dtype=np.uint8), order)


def moc_cells(moc: Any) -> dict[int, list[int]]:
    """Return the canonical cells of a MOC by order."""
    out: dict[int, list[int]] = {}
    data = moc.serialize(format="json")
    for order, cells in data.items():
        if cells:
            out[int(order)] = sorted(int(c) for c in cells)
    return out


def to_fits(cells: dict[int, list[int]], order: int) -> bytes:
    """Write a MOC 2.0 FITS file: a NUNIQ BINTABLE with the §6 keywords."""
    uniq = sorted(4 * 4**k + i for k, idx in cells.items() for i in idx)
    fmt = "1J" if order < 14 else "1K"
    col = fits.Column(name="UNIQ", format=fmt,
                      array=np.array(uniq, dtype=np.int32 if fmt == "1J" else np.int64))
    hdu = fits.BinTableHDU.from_columns([col])
    h = hdu.header
    for key, value, comment in (
            ("MOCVERS", "2.0", "MOC version"), ("MOCDIM", "SPACE", "Spatial MOC"),
            ("ORDERING", "NUNIQ", "NUNIQ coding method"),
            ("COORDSYS", "C", "ICRS reference frame"),
            ("MOCORD_S", order, "MOC resolution (best order)"),
            ("MOCTOOL", f"vo-archive {__version__}", "Software that wrote the MOC"),
            ("MOCTYPE", "CATALOG", "Coverage of product footprints"),
            ("MOCID", "ivo://pessto.ia2.inaf.it/pessto/moc", "MOC identifier"),
            ("ORIGIN", "PESSTO archive", "MOC origin"),
            ("DATE", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "Creation date")):
        h[key] = (value, comment)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def to_json(cells: dict[int, list[int]], order: int) -> bytes:
    """Write the JSON serialisation (MOC 2.0 App. D), with the empty best order."""
    data = {str(k): cells[k] for k in sorted(cells)}
    data.setdefault(str(order), [])
    return json.dumps(data, separators=(",", ":")).encode()


def to_ascii(cells: dict[int, list[int]], order: int) -> bytes:
    """Write the ASCII serialisation (``1/1 2 4 2/12-14``), ranges folded."""
    parts = []
    for k in sorted(cells):
        idx, words = cells[k], []
        i = 0
        while i < len(idx):
            j = i
            while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
                j += 1
            words.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
            i = j + 1
        parts.append(f"{k}/" + " ".join(words))
    if order not in cells:
        parts.append(f"{order}/")
    return (" ".join(parts) + "\n").encode()


WRITERS = {"fits": to_fits, "json": to_json, "ascii": to_ascii}


def _requested_format(suffix: str | None) -> str:
    raw = (suffix or web.params().single("FORMAT") or
           web.params().single("RESPONSEFORMAT") or "fits").strip().lower()
    aliases = {"fits": "fits", "application/fits": "fits", "json": "json",
               "application/json": "json", "ascii": "ascii", "txt": "ascii",
               "text": "ascii", "text/plain": "ascii"}
    if raw not in aliases:
        raise UsageFault(f"parameter FORMAT={raw!r} is not fits, json or ascii",
                         "FORMAT")
    return aliases[raw]


def _cached(fmt: str) -> Path:
    settings = web.settings()
    with web.reading() as conn:
        count, newest = conn.execute(text(
            "SELECT count(*), coalesce(max(version_id), 0) FROM pessto.products")).one()
        scope = "all" if current_caller().sees_proprietary else "public"
        path = (
            settings.cache_dir / "moc" / f"{scope}-{count}-{newest}-{MOC_ORDER}.{fmt}"
        )
        if path.exists():
            return path
        rows = conn.execute(text(
            "SELECT v.footprint::text, v.ra, v.dec FROM pessto.products p "
            "JOIN archive.version v ON v.version_id = p.version_id "
            "WHERE v.ra IS NOT NULL")).all()
    moc = coverage_cells([r[0] for r in rows if r[0]],
                         [(r[1], r[2]) for r in rows if not r[0]])
    data = WRITERS[fmt](moc_cells(moc), MOC_ORDER)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


@bp.get("/moc", strict_slashes=False)
@bp.get("/moc.<any(fits, json, txt):suffix>")
@bp.get("/moc/Moc.<any(fits, json, txt):suffix>")
def coverage(suffix: str | None = None) -> Response:
    """Serve the coverage MOC (FITS by default; ``.json``/``.txt`` or FORMAT=)."""
    g.wants_votable = False
    fmt = _requested_format("ascii" if suffix == "txt" else suffix)
    path = _cached(fmt)
    resp = Response(path.read_bytes(), mimetype=MEDIA_TYPES[fmt])
    if fmt == "fits":
        resp.headers["Content-Disposition"] = 'inline; filename="pessto-moc.fits"'
    return resp
