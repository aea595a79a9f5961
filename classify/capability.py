"""VOSI capabilities of ``/classify``: the sync and async interfaces, VOSI ones.

There is no IVOA standard for classification services: the capabilities name
the archive's own standard identifiers and describe every input parameter
(VODataService 1.1 ``vs:ParamHTTP``), so that a client can build requests.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from vo_archive.vosi import Capability, vosi_capabilities

STANDARD_ID = "ivo://pessto.ia2.inaf.it/std/classify"
SYNC_ID = STANDARD_ID + "#sync-1.0"
ASYNC_ID = STANDARD_ID + "#async-1.0"
#: Execution duration of async jobs, s (a classification takes a fraction of a second).
ASYNC_DURATION = 600
RETENTION_DAYS = 7

#: Input parameters: (name, VODataService datatype, unit, UCD, description).
INPUTS: tuple[tuple[str, str, str | None, str | None, str], ...] = (
    ("ID", "string", None, "meta.id;meta.main",
     "The spectrum: a product id or a dataset identifier (publisher DID) of a 1D "
     "spectrum of the archive; or upload a spectrum instead (multipart file part, "
     "or the request body): FITS (binary table, multispec, 1D image) or text "
     "columns wavelength (Å), flux[, error]"),
    ("ZMIN", "real", None, "src.redshift;stat.min", "Smallest redshift searched"),
    ("ZMAX", "real", None, "src.redshift;stat.max", "Largest redshift searched"),
    ("Z", "real", None, "src.redshift", "Fixed redshift (e.g. of the host)"),
    ("AGEMIN", "real", "d", "time.phase;stat.min",
     "Youngest template epoch used, days from maximum"),
    ("AGEMAX", "real", "d", "time.phase;stat.max",
     "Oldest template epoch used, days from maximum"),
    ("TYPES", "string", None, "src.class",
     "Template types to use, separated by commas (e.g. Ia,Ib,Ic,II)"),
    ("WMIN", "real", "Angstrom", "em.wl;stat.min", "Shortest observed wavelength used"),
    ("WMAX", "real", "Angstrom", "em.wl;stat.max", "Longest observed wavelength used"),
    ("RLAPMIN", "real", None, "stat.correlation",
     "Smallest rlap of a good match (default 5)"),
    ("TOP", "integer", None, "meta.number", "Number of best matches returned"),
    ("RESPONSEFORMAT", "string", None, "meta.code.mime",
     "votable (default) or json"),
)


def _params() -> str:
    out = []
    for name, datatype, unit, ucd, description in INPUTS:
        out.append(
            '<param std="false">'
            f"<name>{name}</name><description>{escape(description)}</description>"
            + (f"<unit>{unit}</unit>" if unit else "")
            + (f"<ucd>{ucd}</ucd>" if ucd else "")
            + f"<dataType>{datatype}</dataType></param>")
    return ("<queryType>GET</queryType><queryType>POST</queryType>"
            "<resultType>application/x-votable+xml</resultType>" + "".join(out))


def capabilities() -> list[Capability]:
    """Return the classification capabilities and the VOSI ones."""
    params = _params()
    return [
        Capability(SYNC_ID, "/classify/sync", None, "1.0", interface_body=params),
        Capability(ASYNC_ID, "/classify/async", None, "1.0",
                   interface_body=params.replace(
                       "<queryType>GET</queryType>", "")),
        *vosi_capabilities("/classify"),
    ]
