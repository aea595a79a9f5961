"""VOSI 1.1: capabilities and availability documents, shared by every service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from flask import Blueprint, Response
from sqlalchemy import text

from vo_archive import web

CAPABILITIES_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
AVAILABILITY_NS = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VR_NS = "http://www.ivoa.net/xml/VOResource/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
STARTED = datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Capability:
    """One ``<capability>`` of a service.

    Parameters
    ----------
    standard_id
        The standard's IVOID, e.g. ``ivo://ivoa.net/std/ConeSearch``.
    path
        Path of the interface's access URL on this archive.
    xsi_type
        Capability type (e.g. ``cs:ConeSearch``), or None for a plain capability.
    version
        Interface version attribute.
    body
        Extra XML inside the capability after the interface (type-specific
        elements such as ``maxSR``), written by the service.
    role
        Role of the capability's first interface; ``std`` for the standard
        interface (the others have none: see :func:`capability_xml`).
    security
        XML of ``<securityMethod>`` elements placed in the interface.
    use
        ``full`` (the URL as it is) or ``base`` (parameters are appended, as
        for Simple Cone Search, SIA 1.0 and SSA).
    interface_body
        Extra XML inside the interface after the accessURL (``queryType``,
        ``resultType``, ``param`` elements).
    """

    standard_id: str
    path: str
    xsi_type: str | None = None
    version: str | None = None
    body: str = ""
    role: str = "std"
    security: str = ""
    use: str = "full"
    interface_body: str = ""


#: How callers may authenticate (IVOA SSO 2.0 §3): HTTP Basic with an account name
#: and a token or password, and ``Authorization: Bearer`` tokens.
SECURITY_METHODS = ("ivo://ivoa.net/sso#BasicAA", "ivo://ivoa.net/sso#token")
#: Capabilities served to everyone alike (VOSI 1.1 §2: capabilities and
#: availability are anonymous; tables and examples do not depend on the caller).
ANONYMOUS_ONLY = frozenset({
    "ivo://ivoa.net/std/VOSI#capabilities", "ivo://ivoa.net/std/VOSI#availability",
    "ivo://ivoa.net/std/VOSI#tables", "ivo://ivoa.net/std/VOSI#tables-1.1",
    "ivo://ivoa.net/std/DALI#examples",
})
#: standardID of the capability of the whole archive, after the publisher authority.
ARCHIVE_STANDARD = "/pessto#archive"
#: Capabilities anonymous even in the twin (VOSI 1.1 §2).
VOSI_OPEN = frozenset({"ivo://ivoa.net/std/VOSI#capabilities",
                       "ivo://ivoa.net/std/VOSI#availability"})


def _methods(*methods: str) -> str:
    return "".join(f"<securityMethod standardID={quoteattr(m)}/>" for m in methods)


def interfaces(cap: Capability) -> list[tuple[str, str]]:
    """Return (access URL, ``securityMethod`` XML) of each interface of ``cap``.

    One base URL serves anonymous and authenticated callers (TAP 1.1 §2.4,
    VOResource 1.1 §3.3.1): the anonymous interface has no ``securityMethod``,
    one more interface per accepted method names it, and one more gives the
    authenticated twin (``/auth/...``, which always asks for credentials), so
    that clients (pyvo's ``AuthSession``, TOPCAT) learn that authenticated
    access exists, how to use it, and where to send credentials. In the twin's
    own capabilities every interface but VOSI capabilities and availability
    needs credentials. A capability that sets ``security`` itself keeps it.

    Only the first interface has ``role="std"`` (VOResource 1.1 §3.3.1: the
    standard interface of the capability): the anonymous one, or in the twin
    the first authenticated one. The others are further access points of the
    same protocol for credentials, told apart by their ``securityMethod``.
    Clients that pick "the" standard interface get one (pyvo's registry
    ``get_service`` refuses a resource with several; taplint W-CPI2 warns), and
    pyvo's ``AuthSession``, which reads every interface whatever its role, still
    learns each URL's methods.
    """
    url = web.absolute(cap.path)
    if cap.security:
        return [(url, cap.security)]
    if cap.standard_id in VOSI_OPEN:
        return [(url, "")]
    # one securityMethod per interface (VOResource 1.1 §3.3.1, maxOccurs 1)
    if web.in_twin():
        return [(url, _methods(m)) for m in SECURITY_METHODS]
    if cap.standard_id in ANONYMOUS_ONLY:
        return [(url, "")]
    twin = web.twin_absolute(cap.path)
    return [(url, ""), *((url, _methods(m)) for m in SECURITY_METHODS),
            *((twin, _methods(m)) for m in SECURITY_METHODS)]


def archive_capability() -> str:
    """Return the capability saying that every URL of the archive takes credentials.

    Answers to authenticated callers hold URLs of other services (files,
    previews, DataLink, SSA getData) under the twin; this lets a client that
    learnt the capabilities of one service (pyvo's ``AuthSession`` matches URLs
    against the access URLs of ``use="base"`` interfaces) send its credentials
    there too. It is no IVOA protocol: its standardID is the archive's own
    (clients such as STILTS's taplint need one on every capability).
    """
    root = escape(web.public_base_url() + "/")
    std = quoteattr(web.settings().publisher_authority.rstrip("/") + ARCHIVE_STANDARD)
    return (
        f"<capability standardID={std}><description>Every URL of this archive: "
        "anonymous, or with an account's credentials (HTTP Basic or a bearer "
        "token from /login) to see proprietary data; under /auth/ credentials are "
        "always asked for."
        "</description>"
        f'<interface xsi:type="vs:ParamHTTP"><accessURL use="base">{root}'
        "</accessURL></interface>"
        + "".join(f'<interface xsi:type="vs:ParamHTTP"><accessURL use="base">{root}'
                  f"</accessURL>{_methods(m)}</interface>" for m in SECURITY_METHODS)
        + "</capability>")


def capabilities_document(caps: Sequence[Capability],
                          namespaces: dict[str, str] | None = None) -> bytes:
    """Return a VOSI capabilities document for ``caps``."""
    ns = {"vosi": CAPABILITIES_NS, "vr": VR_NS, "vs": VS_NS, "xsi": XSI_NS}
    ns.update(namespaces or {})
    decl = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in ns.items())
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<vosi:capabilities {decl}>"]
    parts += [capability_xml(cap) for cap in caps]
    parts.append(archive_capability())
    parts.append("</vosi:capabilities>\n")
    return "".join(parts).encode()


def capability_xml(cap: Capability) -> str:
    """Return the ``<capability>`` element of ``cap`` (VOResource 1.1 §3.2).

    The same element stands in VOSI capabilities and in registry records; it
    uses the prefixes ``xsi``, ``vs`` and the capability type's own.
    """
    t = f" xsi:type={quoteattr(cap.xsi_type)}" if cap.xsi_type else ""
    version = f" version={quoteattr(cap.version)}" if cap.version else ""
    parts = [f"<capability standardID={quoteattr(cap.standard_id)}{t}>"]
    for n, (url, security) in enumerate(interfaces(cap)):
        # one role="std" interface, the first: the one a client that knows the
        # standard but not our credentials uses (see interfaces())
        role = f" role={quoteattr(cap.role)}" if n == 0 else ""
        parts.append(
            f'<interface xsi:type="vs:ParamHTTP"{role}{version}>'
            f"<accessURL use={quoteattr(cap.use)}>"
            f"{escape(url)}</accessURL>"
            f"{security}{cap.interface_body}</interface>"
        )
    parts.append(cap.body)
    parts.append("</capability>")
    return "".join(parts)


def vosi_capabilities(base: str) -> list[Capability]:
    """Return the VOSI capabilities (capabilities, availability) at base."""
    return [
        Capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities",
                   role="std"),
        Capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability",
                   role="std"),
    ]


def database_available() -> tuple[bool, str]:
    """Probe PostgreSQL for real; return (available, note)."""
    try:
        with web.engine().connect() as conn:
            conn.execute(text("SELECT 1 FROM archive.product LIMIT 1"))
        return True, "service is accepting queries"
    except Exception as exc:  # any failure means unavailable
        return False, f"database unavailable: {type(exc).__name__}"


def availability_document() -> bytes:
    """Return a VOSI availability document from a live database probe."""
    ok, note = database_available()
    up = STARTED.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:availability xmlns:vosi="{AVAILABILITY_NS}">'
        f"<vosi:available>{'true' if ok else 'false'}</vosi:available>"
        f"<vosi:upSince>{up}</vosi:upSince>"
        f"<vosi:note>{escape(note)}</vosi:note>"
        "</vosi:availability>\n"
    ).encode()


def add_vosi_routes(bp: Blueprint, capabilities: Callable[[], Sequence[Capability]],
                    namespaces: dict[str, str] | None = None) -> None:
    """Add ``/capabilities`` and ``/availability`` under a blueprint (GET only)."""

    def caps_view() -> Response:
        return Response(capabilities_document(capabilities(), namespaces),
                        mimetype="text/xml")

    def avail_view() -> Response:
        return Response(availability_document(), mimetype="text/xml")

    bp.add_url_rule("/capabilities", "capabilities", caps_view, methods=["GET"])
    bp.add_url_rule("/availability", "availability", avail_view, methods=["GET"])
