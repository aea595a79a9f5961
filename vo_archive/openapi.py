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
from vo_archive.dali.errors import FaultStyle

bp = Blueprint("openapi", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

FAULT_NAMES = ("UsageFault", "NotFoundFault", "AuthorizationFault", "TransientFault",
               "FatalFault", "DefaultFault")


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
            out["examples"] = {f"e{i}": {"value": v} for i, v in enumerate(self.examples)}
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


_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_SKIP_METHODS = {"HEAD", "OPTIONS"}


def _path_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for conv, name in _CONVERTER.findall(rule):
        schema: dict[str, Any] = {"type": "integer", "minimum": 0} if conv == "int" \
            else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _CONVERTER.sub(r"{\2}", rule), params


def _error_content(style: FaultStyle) -> dict[str, Any]:
    if style in (FaultStyle.DALI, FaultStyle.SCS):
        return {"application/x-votable+xml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}}
    return {"text/plain": {"schema": {"type": "string",
                                      "pattern": f"^({'|'.join(FAULT_NAMES)}): "}}}


def build_spec(app: Flask, base_url: str = "") -> dict[str, Any]:
    """Return the OpenAPI document of ``app``'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        path, path_params = _path_params(rule.rule)
        blueprint = rule.endpoint.rpartition(".")[0]
        style = web.FAULT_STYLES.get(blueprint, FaultStyle.TEXT)
        for method in sorted((rule.methods or set()) - _SKIP_METHODS):
            view = app.view_functions.get(rule.endpoint)
            doc = (getattr(view, "__doc__", None) or "").strip().splitlines()
            op: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
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
    spec = build_spec(current_app, web.base_url())  # type: ignore[arg-type]
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
    "content": {"application/fits": {"schema": {"type": "string",
                                                  "contentMediaType": "application/fits"}},
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
