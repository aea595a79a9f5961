"""What an object page shows above its products (no Flask here).

Everything is read on a connection scoped to the caller
(:func:`vo_archive.access.caller_connection`) from the products the caller may
see (:func:`vo_archive.retrieval.query.object_files`): the page, the viewer's
data and the downloads follow the one access rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from sqlalchemy import Connection, text

from vo_archive.ingest.storage import Storage
from vo_archive.retrieval.query import ProductFile, TargetInfo
from vo_archive.spectra import NotASpectrum, read_spectrum
from vo_archive.vo.dal import publisher_did
from vo_archive.web.pages.viewer import PlotSpectrum, TemplateCurve

log = logging.getLogger(__name__)

#: Product types shown in the viewer (the 1D spectra the classifier reads).
SPECTRUM_TYPES = ("fluxcal_1d", "telluric_corrected_1d", "extracted_1d")
#: Most spectra and image thumbnails an object page shows.
MAX_SPECTRA = 40
MAX_IMAGES = 12


def sexagesimal(ra: float, dec: float) -> tuple[str, str]:
    """Return RA as ``hh:mm:ss.ss`` and Dec as ``±dd:mm:ss.s``."""
    h = (ra % 360.0) / 15.0
    hh, rem = divmod(h * 3600.0, 3600.0)
    mm, ss = divmod(rem, 60.0)
    if round(ss, 2) >= 60.0:
        ss, mm = 0.0, mm + 1
    if mm >= 60:
        mm, hh = mm - 60, hh + 1
    sign = "-" if dec < 0 else "+"
    d = abs(dec) * 3600.0
    dd, rem = divmod(d, 3600.0)
    dm, ds = divmod(rem, 60.0)
    if round(ds, 1) >= 60.0:
        ds, dm = 0.0, dm + 1
    if dm >= 60:
        dm, dd = dm - 60, dd + 1
    return (f"{int(hh) % 24:02d}:{int(mm):02d}:{ss:05.2f}",
            f"{sign}{int(dd):02d}:{int(dm):02d}:{ds:04.1f}")


@dataclass(slots=True)
class ObjectView:
    """The top of an object page."""

    ra_sex: str | None = None
    dec_sex: str | None = None
    latest: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    spectra: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    tap_url: str = ""
    plot_script: str = ""
    plot_div: str = ""


def classifications(conn: Connection, version_ids: Sequence[int]
                    ) -> list[dict[str, Any]]:
    """Return the stored classifications of these versions, newest first.

    Read through ``pessto.classifications``: the spectrum's access rule.
    """
    if not version_ids:
        return []
    rows = conn.execute(text(
        "SELECT c.classification_id, c.version_id, c.product_id, c.version_no, "
        "c.sn_type, c.sn_subtype, c.redshift, c.redshift_err, c.age, c.rlap, "
        "c.good, c.problem, c.classified_at, c.classifier_version, "
        "c.library_version, "
        # the template shown: the verdict type's first good match (the list is in
        # SNID's rlap order; the vote ranks by likeness, and the first match may be
        # of another type), else the first match
        "COALESCE((SELECT m FROM jsonb_array_elements(a.matches) WITH ORDINALITY "
        "AS e(m, k) WHERE m ->> 'type' = c.sn_type AND m ->> 'good' = 'true' "
        "ORDER BY k LIMIT 1), a.matches -> 0) AS best "
        "FROM pessto.classifications c "
        "JOIN archive.classification a USING (classification_id) "
        "WHERE c.version_id = ANY(:ids) ORDER BY c.classified_at DESC, "
        "c.classification_id DESC"), {"ids": list(version_ids)}).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        d["classified_at"] = d["classified_at"].strftime("%Y-%m-%d %H:%M UTC")
        d["quality"] = ("good" if d["good"] else "poor") + (
            f" (rlap {d['rlap']:.1f})" if d["rlap"] is not None else "")
        out.append(d)
    return out


def version_ids(conn: Connection, files: Sequence[ProductFile]) -> dict[tuple[int, int],
                                                                       int]:
    """Return the version id of each (product id, version number)."""
    if not files:
        return {}
    rows = conn.execute(text(
        "SELECT product_id, version_no, version_id FROM archive.version "
        "WHERE product_id = ANY(:p)"), {"p": list({f.product_id for f in files})})
    return {(p, v): i for p, v, i in rows}


def template_curve(best: Mapping[str, Any], extra: Mapping[str, object]
                   ) -> TemplateCurve | None:
    """Return the flux of a stored best match from the template library.

    The library holds continuum-flattened templates on a log-wavelength grid;
    the curve is ``1 + flat`` (the viewer's spectra are divided by their
    median) at the match's redshift. None when the library lacks the template.
    """
    from classify.templates import TemplateError, configured_library

    try:
        lib = configured_library(extra)
    except TemplateError as exc:
        log.warning("no template library for the viewer: %s", exc)
        return None
    name = str(best.get("template") or "")
    rows = np.flatnonzero((lib.sn == name) | (lib.family == name))
    if rows.size == 0:
        return None
    phase = best.get("phase")
    if phase is not None:
        rows = rows[np.argsort(np.abs(lib.phase[rows] - float(phase)))]
    flux = lib.flux[rows[0]].astype(np.float64)
    wave = lib.w0 * np.exp(lib.dwlog * (np.arange(lib.nbin) + 0.5))
    z = float(best.get("z") or 0.0)
    keep = flux != 0.0
    label = f"{name} ({best.get('subtype') or best.get('type')}, " \
            f"{float(phase or 0):+.0f} d, z={z:.4f})"
    return TemplateCurve(label, wave[keep] * (1.0 + z), 1.0 + flux[keep])


def read_plot_spectra(files: Sequence[ProductFile], storage: Storage
                      ) -> tuple[list[PlotSpectrum], list[ProductFile]]:
    """Read the object's 1D science spectra (date order) for the viewer."""
    chosen = [f for f in files if f.product_type in SPECTRUM_TYPES
              and f.category == "science" and f.is_current]
    chosen.sort(key=lambda f: (f.night.isoformat() if f.night else "", f.filename))
    out, used = [], []
    for f in chosen[:MAX_SPECTRA]:
        try:
            with storage.local_path(f.storage_key) as path:
                s = read_spectrum(path)
        except (NotASpectrum, OSError, ValueError, KeyError, IndexError) as exc:
            log.info("viewer skips %s: %s", f.filename, exc)
            continue
        label = f"{f.night or '?'} {f.instrument} {f.product_type}"
        out.append(PlotSpectrum(label, s.wave, s.flux, not f.public))
        used.append(f)
    return out, used


def image_marks(files: Sequence[ProductFile], target: TargetInfo,
                storage: Storage) -> list[dict[str, Any]]:
    """Return science image thumbnails with the target's place and orientation.

    The preview PNG keeps the pixel grid (row 1 at the bottom); the page flips
    it so that north is up and east left (from the signs of the WCS's CD
    matrix; PESSTO's EFOSC2 and SOFI frames are not rotated) and marks the
    target at its pixel position.
    """
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    out: list[dict[str, Any]] = []
    for f in files:
        if f.mode != "imaging" or f.category != "science" or not f.is_current:
            continue
        if len(out) >= MAX_IMAGES:
            break
        item: dict[str, Any] = {"file": f, "x": None, "y": None, "flip_x": False,
                                "flip_y": False}
        try:
            with storage.local_path(f.storage_key) as path, \
                    fits.open(path, memmap=False) as hdul:
                hdu = next(h for h in hdul if getattr(h, "is_image", False)
                           and h.header.get("NAXIS", 0) >= 2)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    wcs = WCS(hdu.header, naxis=2)
                nx, ny = int(hdu.header["NAXIS1"]), int(hdu.header["NAXIS2"])
                if wcs.has_celestial and target.ra is not None \
                        and target.dec is not None:
                    px, py = wcs.world_to_pixel_values(target.ra, target.dec)
                    cd = wcs.pixel_scale_matrix
                    item["flip_x"] = bool(cd[0, 0] > 0)  # east (RA up) to the left
                    item["flip_y"] = bool(cd[1, 1] < 0)  # north up
                    if 0 <= px < nx and 0 <= py < ny:
                        x = (float(px) + 0.5) / nx
                        y = 1.0 - (float(py) + 0.5) / ny  # PNG rows run downwards
                        item["x"] = round(100 * (1 - x if item["flip_x"] else x), 2)
                        item["y"] = round(100 * (1 - y if item["flip_y"] else y), 2)
        except (OSError, StopIteration, KeyError, ValueError) as exc:
            log.info("no WCS mark for %s: %s", f.filename, exc)
        out.append(item)
    return out


def timeline(files: Sequence[ProductFile]) -> list[dict[str, Any]]:
    """Return the object's nights: instrument, mode and products of each."""
    nights: dict[tuple[str, str, str], int] = {}
    for f in files:
        if f.night is None:
            continue
        key = (f.night.isoformat(), f.instrument, f.mode)
        nights[key] = nights.get(key, 0) + 1
    if not nights:
        return []
    days = sorted({k[0] for k in nights})
    first = np.datetime64(days[0])
    span = max(1, int((np.datetime64(days[-1]) - first).astype(int)))
    return [{"night": n, "instrument": i, "mode": m, "products": c,
             "at": round(100 * int((np.datetime64(n) - first).astype(int)) / span, 2)}
            for (n, i, m), c in sorted(nights.items())]


def tap_query_url(name: str) -> str:
    """Return a ready synchronous TAP query of the object's ObsCore rows."""
    # ADQL, not SQL: the TAP service parses it; the name's quotes are doubled
    adql = ("SELECT obs_publisher_did"  # noqa: S608
            ", dataproduct_type, calib_level, t_min, "
            "em_min, em_max, access_url FROM ivoa.obscore WHERE target_name = '"
            + name.replace("'", "''") + "' ORDER BY t_min")
    return "/tap/sync?" + urlencode({"REQUEST": "doQuery", "LANG": "ADQL",
                                     "QUERY": adql})


def spectrum_links(f: ProductFile, authority: str) -> dict[str, str]:
    """Return the download and DataLink URLs of one spectrum."""
    did = publisher_did(authority, f.product_id, f.version_no)
    base = f"/products/{f.product_id}/versions/{f.version_no}"
    return {"fits": base, "csv": base + "/spectrum.csv",
            "votable": "/ssap?" + urlencode({"REQUEST": "getData", "PUBDID": did}),
            "datalink": "/datalink/links?ID=" + quote(did, safe="")}
