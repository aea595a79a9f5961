"""The TAP capability (TAPRegExt 1.0) and the VOSI capabilities of /tap."""

from __future__ import annotations

from xml.sax.saxutils import escape

from tap.uploads import MAX_UPLOAD_BYTES
from vo_archive.config import Settings
from vo_archive.vo.dali.formats import FORMATS
from vo_archive.vo.vosi import Capability

TR_NS = "http://www.ivoa.net/xml/TAPRegExt/v1.0"
GEO = "ivo://ivoa.net/std/TAPRegExt#features-adqlgeo"
FEATURES = "ivo://ivoa.net/std/TAPRegExt#features-adql-"

#: ADQL 2.1 §4.2 geometry forms that work here (queryparser + tap_adql).
GEOMETRY_FORMS = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS",
                  "DISTANCE", "AREA", "COORD1", "COORD2", "CENTROID")
#: Optional feature groups (ADQL 2.1 §4.4–4.12) that work: (type suffix, form).
OPTIONAL_FEATURES = (("string", "LOWER"), ("string", "UPPER"), ("string", "ILIKE"),
                     ("offset", "OFFSET"), ("sets", "UNION"), ("sets", "EXCEPT"),
                     ("sets", "INTERSECT"), ("type", "CAST"), ("unit", "IN_UNIT"),
                     ("common-table", "WITH"), ("conditional", "COALESCE"))
# features-adql-conditional is ADQL 2.1's key for COALESCE (the REC of 2023, as
# VOLLT's ADQL library and current TOPCAT know it); STILTS taplint 3.4.7 predates
# it and reports E-CAP-KEYX "Unknown standard feature key": the standard wins.
UDF = "ivo://ivoa.net/std/TAPRegExt#features-udf"
#: User-defined functions (tap.adql.translate.UDFS): (form, description).
UDF_FORMS = (
    ("ivo_hasword(haystack TEXT, needle TEXT) -> INTEGER",
     "1 if the words of needle stand in haystack in that order (case-insensitive), "
     "else 0"),
    ("ivo_healpix_index(hpxOrder INTEGER, ra DOUBLE, dec DOUBLE) -> BIGINT",
     "NESTED HEALPix index at order hpxOrder (0-29) of an ICRS position in degrees"),
    ("ivo_string_agg(expr TEXT, delim TEXT) -> TEXT",
     "Aggregate: the values of expr in a group joined by delim"),
)
ASYNC_DURATION = 3600
RETENTION_DAYS = 7


def _language() -> str:
    feats = "".join(f"<feature><form>{f}</form></feature>" for f in GEOMETRY_FORMS)
    groups: dict[str, list[str]] = {}
    for group, form in OPTIONAL_FEATURES:
        groups.setdefault(group, []).append(form)
    other = "".join(
        f'<languageFeatures type="{FEATURES}{group}">'
        + "".join(f"<feature><form>{form}</form></feature>" for form in forms)
        + "</languageFeatures>" for group, forms in groups.items())
    udfs = "".join(f"<feature><form>{escape(form)}</form>"
                   f"<description>{escape(desc)}</description></feature>"
                   for form, desc in UDF_FORMS)
    other += f'<languageFeatures type="{UDF}">{udfs}</languageFeatures>'
    return (
        "<language><name>ADQL</name>"
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        "<description>ADQL 2.1 translated to PostgreSQL with pgSphere</description>"
        f'<languageFeatures type="{GEO}">{feats}</languageFeatures>{other}'
        "</language>")


def _formats() -> str:
    parts = []
    for f in FORMATS:
        ivo = f' ivo-id="{f.ivo_id}"' if f.ivo_id else ""
        aliases = "".join(f"<alias>{escape(a)}</alias>" for a in f.aliases
                          if "/" not in a or a.startswith("votable/"))
        parts.append(f"<outputFormat{ivo}><mime>{escape(f.mime)}</mime>{aliases}"
                     "</outputFormat>")
    return "".join(parts)


def tap_body(settings: Settings) -> str:
    """Return the TableAccess elements after the interface (TAPRegExt §2)."""
    return (
        '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
        + _language() + _formats()
        + '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
        '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-http"/>'
        f"<retentionPeriod><default>{RETENTION_DAYS * 86400}</default>"
        f"<hard>{RETENTION_DAYS * 86400 * 4}</hard></retentionPeriod>"
        f"<executionDuration><default>{ASYNC_DURATION}</default>"
        f"<hard>{ASYNC_DURATION * 4}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{settings.maxrec_default}</default>'
        f'<hard unit="row">{settings.maxrec_hard}</hard></outputLimit>'
        f'<uploadLimit><default unit="byte">{MAX_UPLOAD_BYTES}</default>'
        f'<hard unit="byte">{MAX_UPLOAD_BYTES}</hard></uploadLimit>')


def capabilities(settings: Settings, base: str = "/tap") -> list[Capability]:
    """Return the capabilities of the TAP service at ``base``."""
    return [
        # use="base": /sync, /async and the jobs live under it (TAP 1.1 §2.4),
        # and clients (pyvo's AuthSession) match the job URLs against it to
        # know that they may send credentials there
        Capability("ivo://ivoa.net/std/TAP", base, "tr:TableAccess", "1.1",
                   tap_body(settings), use="base"),
        Capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
        Capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability"),
        Capability("ivo://ivoa.net/std/VOSI#tables-1.1", f"{base}/tables",
                   version="1.1"),
        Capability("ivo://ivoa.net/std/DALI#examples", f"{base}/examples"),
    ]


NAMESPACES = {"tr": TR_NS}
