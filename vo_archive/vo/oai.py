"""OAI-PMH 2.0 interface of the archive's publishing registry (``/oai``).

IVOA Registry Interfaces 1.1 §2: a publishing registry answers the six
OAI-PMH verbs with VOResource records (``ivo_vor``) and Dublin Core
(``oai_dc``), in the set ``ivo_managed``. Every answer, errors included, is an
OAI-PMH document with status 200 (OAI-PMH 2.0 §3.6); lists longer than the
configured page come in pages chained by resumption tokens (§3.5). Tokens carry
the whole request (stateless, so any web node continues any list).

:func:`answer` is Flask-free apart from the request context the records need
for their absolute URLs; the route only reads the parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from flask import Blueprint, Response, request

from vo_archive import web
from vo_archive.vo.dali.errors import FaultStyle, UsageFault, xml_text
from vo_archive.vo.registry import Record, authority_id, records, registry_settings

bp = Blueprint("oai", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_XSD = "http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
RI_SCHEMA = "http://www.ivoa.net/xml/RegistryInterface/v1.0"
#: metadataPrefix -> (schema, namespace) (RI 1.1 §2.3.2).
FORMATS = {
    "ivo_vor": ("http://www.ivoa.net/xml/RegistryInterface/RegistryInterface-v1.0.xsd",
                RI_SCHEMA),
    "oai_dc": ("http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC_NS),
}
MANAGED_SET = "ivo_managed"
#: Arguments each verb accepts: (required, optional); a resumption token is
#: exclusive (OAI-PMH 2.0 §4).
VERBS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "Identify": (frozenset(), frozenset()),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"})),
    "ListSets": (frozenset(), frozenset()),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset()),
    "ListIdentifiers": (frozenset({"metadataPrefix"}),
                        frozenset({"from", "until", "set"})),
    "ListRecords": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set"})),
}
TOKEN_VERBS = frozenset({"ListIdentifiers", "ListRecords", "ListSets"})
DEFAULT_PAGE = 100
#: metadataPrefix syntax (OAI-PMH 2.0 schema, metadataPrefixType).
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9\-_.!~*'()]+")


class OAIError(Exception):
    """An OAI-PMH error condition (OAI-PMH 2.0 §3.6)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class OAIRequest:
    """A checked OAI-PMH request."""

    verb: str
    args: dict[str, str]
    offset: int = 0


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: str, name: str, end: bool = False) -> datetime:
    """Return an OAI-PMH UTCdatetime (day or seconds granularity, §3.3.1).

    A day given as ``until`` means its whole day (inclusive).
    """
    for fmt, step in (("%Y-%m-%d", timedelta(days=1)),
                      ("%Y-%m-%dT%H:%M:%SZ", timedelta(seconds=1))):
        try:
            t = datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return t + step - timedelta(microseconds=1) if end else t
    raise OAIError("badArgument", f"{name}: not a date of the form YYYY-MM-DD or "
                   f"YYYY-MM-DDThh:mm:ssZ: {value!r}")


def encode_token(req: OAIRequest, offset: int) -> str:
    """Return the resumption token continuing ``req`` at ``offset``."""
    raw = json.dumps({"v": req.verb, "a": req.args, "o": offset},
                     separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(verb: str, token: str) -> OAIRequest:
    """Return the request a resumption token stands for."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        args = {str(k): str(v) for k, v in data["a"].items()}
        offset = int(data["o"])
        if data["v"] != verb or offset < 0:
            raise ValueError(token)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError) as exc:
        raise OAIError("badResumptionToken",
                       "the resumption token is not one this archive issued") from exc
    return OAIRequest(verb, args, offset)


def parse_request(items: Sequence[tuple[str, str]]) -> OAIRequest:
    """Check the arguments of a request (OAI-PMH 2.0 §3.1.1, §4).

    Raises
    ------
    OAIError
        ``badVerb`` or ``badArgument`` (illegal, missing or repeated arguments).
    """
    seen: dict[str, str] = {}
    for key, value in items:
        if key in seen:
            raise OAIError("badArgument" if key != "verb" else "badVerb",
                           f"argument {key} is repeated")
        seen[key] = value
    verb = seen.pop("verb", None)
    if verb is None:
        raise OAIError("badVerb", "no verb given")
    if verb not in VERBS:
        raise OAIError("badVerb", f"unknown verb {verb!r}")
    required, optional = VERBS[verb]
    if "resumptionToken" in seen:
        if verb not in TOKEN_VERBS:
            raise OAIError("badArgument", f"{verb} takes no resumptionToken")
        if len(seen) > 1:
            raise OAIError("badArgument",
                           "resumptionToken is an exclusive argument")
        return decode_token(verb, seen["resumptionToken"])
    illegal = sorted(set(seen) - required - optional)
    if illegal:
        raise OAIError("badArgument", f"{verb} does not take {', '.join(illegal)}")
    missing = sorted(required - set(seen))
    if missing:
        raise OAIError("badArgument", f"{verb} needs {', '.join(missing)}")
    return OAIRequest(verb, seen)


# -- answers -------------------------------------------------------------------


def _header(rec: Record) -> str:
    return (f"<header><identifier>{escape(rec.identifier)}</identifier>"
            f"<datestamp>{_utc(rec.datestamp)}</datestamp>"
            f"<setSpec>{MANAGED_SET}</setSpec></header>")


def _dublin_core(rec: Record, publisher: str) -> str:
    return (f'<oai_dc:dc xmlns:oai_dc="{OAI_DC_NS}" xmlns:dc="{DC_NS}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{OAI_DC_NS} {FORMATS["oai_dc"][0]}">'
            f"<dc:title>{escape(rec.title)}</dc:title>"
            f"<dc:identifier>{escape(rec.identifier)}</dc:identifier>"
            f"<dc:description>{escape(rec.description)}</dc:description>"
            f"<dc:publisher>{escape(publisher)}</dc:publisher>"
            f"<dc:date>{rec.datestamp.strftime('%Y-%m-%d')}</dc:date>"
            f"<dc:type>{escape(rec.resource_type)}</dc:type></oai_dc:dc>")


def _record(rec: Record, prefix: str, publisher: str) -> str:
    meta = rec.xml if prefix == "ivo_vor" else _dublin_core(rec, publisher)
    return f"<record>{_header(rec)}<metadata>{meta}</metadata></record>"


def _check_prefix(prefix: str) -> None:
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise OAIError("badArgument", f"metadataPrefix {prefix!r} is malformed")
    if prefix not in FORMATS:
        raise OAIError("cannotDisseminateFormat",
                       f"metadataPrefix {prefix!r} is not offered "
                       f"(offered: {', '.join(FORMATS)})")


def _select(recs: list[Record], args: dict[str, str]) -> list[Record]:
    start = parse_date(args["from"], "from") if "from" in args else None
    end = parse_date(args["until"], "until", end=True) if "until" in args else None
    if ("from" in args and "until" in args
            and len(args["from"]) != len(args["until"])):
        raise OAIError("badArgument", "from and until have different granularities")
    if start is not None and end is not None and start > end:
        raise OAIError("badArgument", "from is later than until")
    if args.get("set", MANAGED_SET) != MANAGED_SET:
        raise OAIError("noRecordsMatch", f"there is no set {args['set']!r}")
    out = [r for r in recs if (start is None or r.datestamp >= start)
           and (end is None or r.datestamp <= end)]
    if not out:
        raise OAIError("noRecordsMatch", "no record matches the dates given")
    return out


def _page(items: list[str], req: OAIRequest, size: int) -> str:
    if req.offset > len(items):
        raise OAIError("badResumptionToken", "the resumption token is past the list")
    page = items[req.offset:req.offset + size]
    body = "".join(page)
    following = req.offset + len(page)
    if req.offset == 0 and following >= len(items):
        return body  # a complete list needs no token (§3.5)
    token = encode_token(req, following) if following < len(items) else ""
    return (body + f'<resumptionToken completeListSize="{len(items)}" '
            f'cursor="{req.offset}">{token}</resumptionToken>')


def _identify(recs: list[Record], base: str) -> str:
    s = web.settings()
    reg = registry_settings(s)
    registry = next(r for r in recs if r.resource_type == "vg:Registry")
    earliest = min(r.datestamp for r in recs)
    return ("<Identify>"
            f"<repositoryName>{escape(reg['repository_name'])}</repositoryName>"
            f"<baseURL>{escape(base)}</baseURL>"
            "<protocolVersion>2.0</protocolVersion>"
            f"<adminEmail>{escape(reg['contact_email'])}</adminEmail>"
            f"<earliestDatestamp>{_utc(earliest)}</earliestDatestamp>"
            "<deletedRecord>transient</deletedRecord>"
            "<granularity>YYYY-MM-DDThh:mm:ssZ</granularity>"
            f"<description>{registry.xml}</description>"
            "</Identify>")


def _verb_body(req: OAIRequest, recs: list[Record], base: str, size: int) -> str:
    s = web.settings()
    publisher = registry_settings(s)["organisation"]
    if req.verb == "Identify":
        return _identify(recs, base)
    if req.verb == "ListMetadataFormats":
        ident = req.args.get("identifier")
        if ident is not None and all(r.identifier != ident for r in recs):
            raise OAIError("idDoesNotExist", f"no record {ident!r}")
        fmts = "".join(f"<metadataFormat><metadataPrefix>{p}</metadataPrefix>"
                       f"<schema>{schema}</schema>"
                       f"<metadataNamespace>{ns}</metadataNamespace></metadataFormat>"
                       for p, (schema, ns) in FORMATS.items())
        return f"<ListMetadataFormats>{fmts}</ListMetadataFormats>"
    if req.verb == "ListSets":
        sets = [f"<set><setSpec>{MANAGED_SET}</setSpec><setName>Resources managed "
                f"by {escape(authority_id(s))}</setName></set>"]
        return f"<ListSets>{_page(sets, req, size)}</ListSets>"
    prefix = req.args["metadataPrefix"]
    _check_prefix(prefix)
    if req.verb == "GetRecord":
        rec = next((r for r in recs if r.identifier == req.args["identifier"]), None)
        if rec is None:
            raise OAIError("idDoesNotExist", f"no record {req.args['identifier']!r}")
        return f"<GetRecord>{_record(rec, prefix, publisher)}</GetRecord>"
    chosen = _select(recs, req.args)
    if req.verb == "ListIdentifiers":
        items = [_header(r) for r in chosen]
    else:
        items = [_record(r, prefix, publisher) for r in chosen]
    return f"<{req.verb}>{_page(items, req, size)}</{req.verb}>"


def answer(items: Sequence[tuple[str, str]], base: str) -> bytes:
    """Return the OAI-PMH document answering a request's arguments."""
    s = web.settings()
    size = int(s.extra.get("registry", {}).get("page_size", DEFAULT_PAGE))
    now = datetime.now(UTC)
    try:
        req = parse_request(items)
        recs = records(s, web.engine(), "/oai", size)
        body = _verb_body(req, recs, base, size)
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in
                        [("verb", req.verb), *sorted(dict(items).items())]
                        if k != "verb")
        attrs = f" verb={quoteattr(req.verb)}{attrs}"
    except OAIError as err:
        # the message may echo an argument's name holding characters XML cannot
        body = (f"<error code={quoteattr(err.code)}>{escape(xml_text(err.message))}"
                "</error>")
        # §3.2: no attributes when the verb or the arguments were wrong
        attrs = ""
        if err.code not in ("badVerb", "badArgument"):
            attrs = "".join(f" {xml_text(k)}={quoteattr(xml_text(v))}"
                            for k, v in items)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<OAI-PMH xmlns="{OAI_NS}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{OAI_NS} {OAI_XSD}">'
            f"<responseDate>{_utc(now)}</responseDate>"
            f"<request{attrs}>{escape(base)}</request>{body}</OAI-PMH>\n").encode()


@bp.route("/oai", methods=["GET", "POST"])
def oai() -> Response:
    """Answer an OAI-PMH request (GET, or POST form-encoded: OAI-PMH 2.0 §3.1.1)."""
    try:
        items = list(request.args.items(multi=True))
        if request.method == "POST":
            items += list(request.form.items(multi=True))
    except UnicodeDecodeError as exc:
        raise UsageFault("request parameters are not valid UTF-8") from exc
    return Response(answer(items, web.absolute("/oai")),
                    mimetype="text/xml", content_type="text/xml; charset=utf-8")
