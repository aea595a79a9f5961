"""OpenAPI 3.1 description of every endpoint, served at ``/openapi.json``.

Paths and methods come from the application's URL map, so no route is ever
missing; the query parameters of each endpoint come from :data:`PARAMETERS`
(by Flask endpoint name), which services extend with :func:`declare`. Each
operation also says how its errors are written (``x-fault-style``: ``dali`` and
``scs`` answer VOTable error documents, ``text`` answers ``text/plain``
starting with the fault name), which the property-based fuzz test checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, json

from vo_archive import __version__, web
from vo_archive.vo.dali.errors import FaultStyle

bp = Blueprint("openapi", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

FAULT_NAMES = ("UsageFault", "NotFoundFault", "AuthorizationFault", "TransientFault",
               "FatalFault", "DefaultFault",
               # SODA 1.0 §5.2 error codes (/soda)
               "UsageError", "MultiValuedParamNotSupported", "AuthenticationError",
               "AuthorizationError", "ServiceUnavailable", "Error")


@dataclass(frozen=True, slots=True)
class Param:
    """One query or form parameter of an endpoint.

    Parameters
    ----------
    name
        Wire name (matched without case).
    description
        What it means.
    schema
        JSON schema of one value (``{"type": "number", "minimum": 0}``...).
    repeatable
        Whether it may be given more than once.
    required
        Whether the endpoint refuses a request without it.
    examples
        Typical valid values (the fuzz test starts from them).
    """

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    repeatable: bool = False
    required: bool = False
    examples: tuple[str, ...] = ()

    def as_openapi(self) -> dict[str, Any]:
        """Return the OpenAPI parameter object."""
        schema: dict[str, Any] = dict(self.schema)
        if self.repeatable:
            schema = {"type": "array", "items": schema}
        out: dict[str, Any] = {"name": self.name, "in": "query",
                               "description": self.description,
                               "required": self.required, "schema": schema}
        if self.repeatable:
            out.update(style="form", explode=True)
        if self.examples:
            out["examples"] = {f"e{i}": {"value": v}
                               for i, v in enumerate(self.examples)}
        return out


#: Query parameters by Flask endpoint name.
PARAMETERS: dict[str, tuple[Param, ...]] = {}
#: Request bodies by Flask endpoint name (OpenAPI requestBody objects).
BODIES: dict[str, dict[str, Any]] = {}
#: Endpoints that need authentication (all others accept it optionally).
AUTH_REQUIRED: set[str] = set()


def declare(endpoint: str, *params: Param, body: dict[str, Any] | None = None,
            auth_required: bool = False) -> None:
    """Declare the parameters (and body) of an endpoint."""
    PARAMETERS[endpoint] = tuple(params)
    if body is not None:
        BODIES[endpoint] = body
    if auth_required:
        AUTH_REQUIRED.add(endpoint)


_CONVERTER = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
_SKIP_METHODS = {"HEAD", "OPTIONS"}


def _path_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for conv, args, name in _CONVERTER.findall(rule):
        schema: dict[str, Any] = {"type": "string"}
        if conv == "int":
            schema = {"type": "integer", "minimum": 0}
        elif conv == "any":
            schema = {"type": "string", "enum": [a.strip().strip("'\"")
                                                 for a in args.split(",")]}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _CONVERTER.sub(r"{\3}", rule), params


def _error_content(style: FaultStyle) -> dict[str, Any]:
    if style in (FaultStyle.DALI, FaultStyle.SCS):
        return {"application/x-votable+xml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}}
    return {"text/plain": {"schema": {"type": "string",
                                      "pattern": f"^({'|'.join(FAULT_NAMES)}): "}}}


def build_spec(app: Flask, base_url: str = "") -> dict[str, Any]:
    """Return the OpenAPI document of ``app``'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        path, path_params = _path_params(rule.rule)
        blueprint = rule.endpoint.rpartition(".")[0]
        style = web.FAULT_STYLES.get(blueprint, FaultStyle.TEXT)
        for method in sorted((rule.methods or set()) - _SKIP_METHODS):
            view = app.view_functions.get(rule.endpoint)
            doc = (getattr(view, "__doc__", None) or "").strip().splitlines()
            op_id = f"{rule.endpoint}.{method.lower()}"
            n = 1
            while op_id in used:  # one endpoint on several rules (/moc, /moc.json)
                n += 1
                op_id = f"{rule.endpoint}.{method.lower()}.{n}"
            used.add(op_id)
            op: dict[str, Any] = {
                "operationId": op_id,
                "summary": doc[0] if doc else rule.endpoint,
                "parameters": path_params + [
                    p.as_openapi() for p in PARAMETERS.get(rule.endpoint, ())],
                "responses": {
                    "200": {"description": "the answer"},
                    "4XX": {"description": "a fault", "content": _error_content(style)},
                    "503": {"description": "try again later (Retry-After)",
                            "content": _error_content(style)},
                },
                "x-fault-style": style.value,
                "security": ([{"bearer": []}, {"basic": []}]
                             if rule.endpoint in AUTH_REQUIRED
                             else [{}, {"bearer": []}, {"basic": []}]),
            }
            if rule.endpoint in BODIES and method in ("POST", "PUT"):
                op["requestBody"] = BODIES[rule.endpoint]
                # a body to archive (uploads) needs room in the storage
                op["responses"]["507"] = {
                    "description": "the archive's storage takes no more files",
                    "content": _error_content(style)}
            elif method == "POST" and rule.endpoint in PARAMETERS:
                op["requestBody"] = {"content": {
                    t: {"schema": {"type": "object"}}
                    for t in ("application/x-www-form-urlencoded",
                              "multipart/form-data")}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "PESSTO archive", "version": __version__,
                 "description": "Archive and VO services of the Public ESO "
                                "Spectroscopic Survey of Transient Objects. Parameter "
                                "names are case-insensitive (DALI 1.1 §3.1)."},
        "servers": [{"url": base_url or "/"}],
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "an API token (vo-archive user token)"},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "account name and API token or password"},
        }},
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Describe every endpoint of the archive (OpenAPI 3.1)."""
    spec = build_spec(current_app, web.base_url())
    return Response(json.dumps(spec, indent=1), mimetype="application/json")


# -- parameters of the core and retrieval endpoints -------------------------------

def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _p(name: str, description: str, schema: dict[str, Any] | None = None,
       examples: Iterable[str] = (), **kw: Any) -> Param:
    return Param(name, description, schema or {"type": "string"}, examples=tuple(
        examples), **kw)


FORMAT_PAGE = _p("FORMAT", "html (default for browsers) or json", _enum("html", "json"),
                 ["json"])
SELECTION = (
    _p("LEVEL", "intermediate or final", _enum("intermediate", "final", "raw"),
       ["final"], repeatable=True),
    _p("CATEGORY", "calib or science", _enum("calib", "science"), ["science"],
       repeatable=True),
    _p("INSTRUMENT", "EFOSC or SOFI", _enum("EFOSC", "SOFI"), ["EFOSC"],
       repeatable=True),
    _p("MODE", "imaging or spectroscopy", _enum("imaging", "spectroscopy"),
       ["spectroscopy"], repeatable=True),
    _p("TYPE", "product type", None, ["1d_flux_calibrated"], repeatable=True),
    _p("PRODUCT_TYPE", "product type", None, ["bias"], repeatable=True),
    _p("NIGHT", "observing night YYYY-MM-DD", {"type": "string", "format": "date"},
       ["2014-09-20"], repeatable=True),
    _p("RUN", "run name", None, ["sep14_d20to22_efosc"], repeatable=True),
    _p("PRODUCT", "product id, optionally :version", None, ["1", "2:1"],
       repeatable=True),
    _p("ID", "product id", None, ["1"], repeatable=True),
    _p("VERSION", "current, all or a number", None, ["current", "all", "1"]),
)
ARCHIVE_FORMAT = _p("FORMAT", "tar or zip", _enum("tar", "zip"), ["tar", "zip"])
RADIUS = _p("RADIUS", "cone radius around the object, arcsec",
            {"type": "number", "minimum": 0, "maximum": 3600}, ["10"])

declare("landing")
declare("files.current_file")
declare("files.version_file")
declare("openapi.openapi_json")
declare("upload.upload_many", body={
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "additionalProperties": {
            "type": "string", "contentMediaType": "application/fits"}}}}},
    auth_required=True)
declare("upload.upload_one", body={
    "required": True,
    "content": {"application/fits": {"schema": {
                    "type": "string", "contentMediaType": "application/fits"}},
                "application/octet-stream": {"schema": {"type": "string"}}}},
    auth_required=True)
declare("retrieval.runs", FORMAT_PAGE)
declare("retrieval.run_page", *SELECTION, FORMAT_PAGE)
declare("retrieval.run_download", *SELECTION, ARCHIVE_FORMAT)
declare("retrieval.phase3_report", _p("FORMAT", "html, json or text",
                                      _enum("html", "json", "text"), ["text"]))
declare("retrieval.phase3_bundle", ARCHIVE_FORMAT)
declare("retrieval.objects", FORMAT_PAGE, _p("Q", "name search", None, ["SN"]))
declare("retrieval.object_page", *SELECTION, FORMAT_PAGE, RADIUS)
declare("retrieval.object_download", *SELECTION, ARCHIVE_FORMAT, RADIUS)
declare("retrieval.versions", FORMAT_PAGE)

# -- parameters of the VO services ------------------------------------------------

MAXREC = _p("MAXREC", "most rows to return (0: metadata only)",
            {"type": "integer", "minimum": 0}, ["0", "10"])
RESPONSEFORMAT = _p("RESPONSEFORMAT", "output format (DALI 1.1 §3.4.3)", None,
                    ["votable", "application/x-votable+xml", "csv", "tsv", "fits"])
RUNID = _p("RUNID", "job label, logged (DALI 1.1 §3.4.6)", None, ["fuzz"])
_RA = {"type": "number", "minimum": 0, "maximum": 360}
_DEC = {"type": "number", "minimum": -90, "maximum": 90}

declare("scs.cone",
        _p("RA", "right ascension, ICRS degrees", _RA, ["201.3", "0"], required=True),
        _p("DEC", "declination, ICRS degrees", _DEC, ["-89.7", "0"], required=True),
        _p("SR", "search radius, degrees", {"type": "number", "minimum": 0,
                                              "maximum": 180}, ["0.1", "0"],
           required=True),
        _p("VERB", "verbosity 1-3", {"type": "integer", "minimum": 1, "maximum": 3},
           ["1", "3"]),
        MAXREC, RESPONSEFORMAT)
declare("siap.sia",
        _p("POS", "ra,dec in ICRS degrees", None, ["201.3,-89.7", "10,10"],
           required=True),
        _p("SIZE", "size or width,height in degrees", None, ["0.2", "0.1,0.2", "0"]),
        _p("INTERSECT", "COVERS, ENCLOSED, CENTER or OVERLAPS",
           _enum("COVERS", "ENCLOSED", "CENTER", "OVERLAPS"), ["OVERLAPS"]),
        _p("FORMAT", "MIME types, ALL, GRAPHIC, METADATA", None,
           ["ALL", "image/fits", "METADATA", "GRAPHIC"], repeatable=True),
        _p("VERB", "verbosity", None, ["0", "3"]), MAXREC, RESPONSEFORMAT)
declare("sia2.query",
        _p("POS", "CIRCLE ra dec r, RANGE ra1 ra2 dec1 dec2 or POLYGON ...", None,
           ["CIRCLE 201.3 -89.7 1", "RANGE 0 360 -90 -80",
            "POLYGON 10 10 11 10 11 11", "RANGE 0 +Inf -Inf +Inf"], repeatable=True),
        *(_p(n, f"{n} interval 'lo hi'", None, ["-Inf +Inf", "0 1e10", "5e-7 8e-7"],
             repeatable=True)
          for n in ("BAND", "TIME", "FOV", "SPATRES", "EXPTIME", "TIMERES", "SPECRP")),
        *(_p(n, f"{n} (string)", None, ["PESSTO", "EFOSC", "image"], repeatable=True)
          for n in ("ID", "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE", "TARGET",
                    "FORMAT")),
        _p("CALIB", "calibration level 0-4", {"type": "integer", "minimum": 0,
                                               "maximum": 4}, ["2"], repeatable=True),
        _p("POL", "polarization state", None, ["I"], repeatable=True),
        MAXREC, RESPONSEFORMAT, RUNID)
declare("ssap.ssa",
        _p("REQUEST", "queryData or getData", _enum("queryData", "getData"),
           ["queryData", "getData"]),
        _p("POS", "ra,dec", None, ["201.3,-89.7", "10,10;ICRS"]),
        _p("SIZE", "diameter, degrees", {"type": "number", "minimum": 0,
                                          "maximum": 360}, ["0.5"]),
        _p("BAND", "wavelength range in metres lo/hi", None,
           ["3e-7/9e-7", "/1e-6", "5e-7"]),
        _p("TIME", "time range iso/iso", None, ["2012-01-01/2019-01-01", "2014"]),
        _p("FORMAT", "native, fits, votable, metadata, all", None,
           ["all", "native", "metadata", "application/fits"], repeatable=True),
        _p("PUBDID", "publisher DID (getData)", None,
           ["ivo://pessto.ia2.inaf.it/pessto?1/v1"], repeatable=True),
        *(_p(n, n, None, ["PESSTO", "SN"]) for n in ("TARGETNAME", "TARGETCLASS",
                                                     "REDSHIFT")),
        _p("COLLECTION", "collection", None, ["PESSTO"], repeatable=True),
        MAXREC, RESPONSEFORMAT)
TAP_PARAMS = (
    _p("REQUEST", "doQuery", _enum("doQuery"), ["doQuery"]),
    _p("LANG", "ADQL, ADQL-2.0 or ADQL-2.1", None, ["ADQL", "ADQL-2.1"]),
    _p("QUERY", "the ADQL query", None, [
        "SELECT TOP 5 obs_publisher_did FROM ivoa.obscore",
        "SELECT COUNT(*) FROM ivoa.obscore",
        "SELECT * FROM TAP_SCHEMA.tables",
        "SELECT TOP 3 * FROM ivoa.obscore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec),"
        " CIRCLE('ICRS', 201.3, -89.7, 2)) = 1",
        "SELECT p.product_id FROM pessto.products AS p JOIN pessto.runs AS r ON "
        "r.run_id = p.run_id"]),
    _p("FORMAT", "output format (TAP 1.0)", None, ["votable", "csv"]),
    _p("UPLOAD", "name,URI (param:part or http)", None, ["t,param:t", "t,http://x"],
       repeatable=True),
    MAXREC, RESPONSEFORMAT, RUNID)
declare("tap.sync", *TAP_PARAMS)
declare("tap_async.job_create", *TAP_PARAMS,
        _p("PHASE", "RUN to start at once", _enum("RUN"), ["RUN"]))
declare("tap_async.job_list",
        _p("PHASE", "phase filter", None, ["COMPLETED", "PENDING"], repeatable=True),
        _p("AFTER", "ISO 8601 time", None, ["2020-01-01T00:00:00"]),
        _p("LAST", "newest n jobs", {"type": "integer", "minimum": 1}, ["5"]))
declare("tap_async.job_get",
        _p("WAIT", "seconds to block while active", {"type": "integer"}, ["0", "1"]),
        _p("PHASE", "wait only while in this phase", None, ["EXECUTING"]))
declare("tap_async.job_post", _p("ACTION", "DELETE", _enum("DELETE"), ["DELETE"]))
declare("tap_async.phase_post", _p("PHASE", "RUN or ABORT", _enum("RUN", "ABORT"),
                                   ["RUN", "ABORT"]))
declare("tap_async.destruction", _p("DESTRUCTION", "ISO 8601 time", None,
                                    ["2030-01-01T00:00:00Z"]))
declare("tap_async.duration", _p("EXECUTIONDURATION", "seconds (0: unlimited)",
                                 {"type": "integer", "minimum": 0}, ["60", "0"]))
declare("tap_async.parameters", *TAP_PARAMS)
declare("tap.tables", _p("detail", "min or max", _enum("min", "max"), ["min"]))
declare("datalink.links",
        _p("ID", "publisher DID", None, ["ivo://pessto.ia2.inaf.it/pessto?1/v1"],
           repeatable=True),
        MAXREC, RESPONSEFORMAT)
declare("soda.sync",
        _p("ID", "publisher DID", None, ["ivo://pessto.ia2.inaf.it/pessto?1/v1"]),
        _p("CIRCLE", "ra dec radius (ICRS degrees)", None, ["201.3 -89.7 0.01"]),
        _p("POLYGON", "ra dec pairs (ICRS degrees)", None,
           ["10 10 10.1 10 10.1 10.1"]),
        _p("POS", "CIRCLE, RANGE or POLYGON", None, ["RANGE 10 10.1 10 10.1"]),
        _p("BAND", "wavelength interval in metres 'lo hi'", None,
           ["4e-7 6e-7", "-Inf 5e-7"]),
        _p("TIME", "MJD interval 'lo hi'", None, ["55000 60000"]),
        _p("POL", "polarisation state", None, ["I"], repeatable=True),
        _p("RESPONSEFORMAT", "application/fits", None, ["application/fits"]))
declare("oai.oai",
        _p("verb", "OAI-PMH verb", _enum("Identify", "ListMetadataFormats", "ListSets",
                                         "GetRecord", "ListIdentifiers",
                                         "ListRecords"), ["Identify", "ListRecords"]),
        _p("metadataPrefix", "ivo_vor or oai_dc", None, ["ivo_vor", "oai_dc"]),
        _p("identifier", "IVOID of a record", None, ["ivo://pessto.ia2.inaf.it/tap"]),
        _p("from", "UTC date", None, ["2020-01-01", "2020-01-01T00:00:00Z"]),
        _p("until", "UTC date", None, ["2100-01-01"]),
        _p("set", "ivo_managed", None, ["ivo_managed"]),
        _p("resumptionToken", "continuation of a list", None, ["x"]))
declare("moc.coverage", _p("FORMAT", "fits, json or ascii", _enum("fits", "json",
                                                                   "ascii"), ["json"]),
        RESPONSEFORMAT)
CLASSIFY_PARAMS = (
    _p("ID", "product id or publisher DID of a 1D spectrum", None,
       ["1", "ivo://pessto.ia2.inaf.it/pessto?1/v1"]),
    *(_p(n, d, {"type": "number"}, e) for n, d, e in (
        ("ZMIN", "smallest redshift", ["0"]), ("ZMAX", "largest redshift", ["0.3"]),
        ("Z", "fixed redshift", ["0.05"]), ("AGEMIN", "youngest epoch, d", ["-10"]),
        ("AGEMAX", "oldest epoch, d", ["30"]), ("WMIN", "shortest wavelength, Å",
                                               ["3500"]),
        ("WMAX", "longest wavelength, Å", ["9000"]),
        ("RLAPMIN", "rlap threshold", ["5"]))),
    _p("TYPES", "template types, comma-separated", None, ["Ia,II", "Ib,Ic"]),
    _p("TOP", "number of matches", {"type": "integer", "minimum": 1}, ["5"]),
    _p("RESPONSEFORMAT", "votable or json", _enum("votable", "json"), ["json"]),
)
_SPECTRUM_BODY = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {
        "type": "string", "contentMediaType": "application/octet-stream"}}},
    "application/fits": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}}}}
declare("classify.home")
declare("classify.sync", *CLASSIFY_PARAMS, body=_SPECTRUM_BODY)
declare("classify.stored", CLASSIFY_PARAMS[0], CLASSIFY_PARAMS[-1])
declare("classify_async.job_create", *CLASSIFY_PARAMS, RUNID,
        _p("PHASE", "RUN to start at once", _enum("RUN"), ["RUN"]))
for _name, _params in list(PARAMETERS.items()):
    if _name.startswith("tap_async.") and _name not in ("tap_async.job_create",
                                                       "tap_async.parameters"):
        declare("classify_async" + _name[len("tap_async"):], *_params)
declare("classify_async.parameters", *CLASSIFY_PARAMS)
declare("statistics.statistics", _p("FORMAT", "html or json", _enum("html", "json"),
                                    ["json"]))
