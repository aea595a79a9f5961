"""Faults and their rendering in the form each protocol prescribes.

Services raise a :class:`Fault`; one handler registered in ``create_app``
renders it according to the fault style of the blueprint that raised it:

- ``dali``: a VOTable with ``<INFO name="QUERY_STATUS" value="ERROR">`` in a
  ``RESOURCE type="results"`` and no TABLE (DALI 1.1 §4.4.2; SIA, SSA, TAP,
  DataLink), or ``text/plain`` when a non-VOTable format was asked for;
- ``scs``: the Simple Cone Search form, ``<INFO name="Error" value="...">`` under
  VOTABLE, plus the DALI QUERY_STATUS (SCS 1.03 §2);
- ``text``: ``text/plain`` starting with the fault name (UWS job resources,
  retrieval, the web pages' downloads).

The message always begins with the fault's name, as DALI and SIA 2.0 §3.2 ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape, quoteattr


class FaultStyle(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """How a blueprint's faults are written."""

    DALI = "dali"
    SCS = "scs"
    TEXT = "text"


class Fault(Exception):
    """A request that cannot be answered; ``status`` is the HTTP status."""

    status = 500
    name = "DefaultFault"

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    @property
    def text(self) -> str:
        """The user message, prefixed with the fault name."""
        return f"{self.name}: {self.message}"


class UsageFault(Fault):
    """The caller's mistake: a missing, malformed or out-of-range parameter."""

    status = 400
    name = "UsageFault"


class NotFoundFault(Fault):
    """The named resource (product, job, table) does not exist or is not visible."""

    status = 404
    name = "NotFoundFault"


class AuthorizationFault(Fault):
    """Authentication is needed (401) or the caller may not do this (403)."""

    status = 403
    name = "AuthorizationFault"

    def __init__(self, message: str, authenticate: bool = False) -> None:
        super().__init__(message)
        if authenticate:
            self.status = 401


class TransientFault(Fault):
    """The service cannot answer now; try again later."""

    status = 503
    name = "TransientFault"

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalFault(Fault):
    """An error of the service itself."""

    status = 500
    name = "FatalFault"


class PayloadTooLarge(UsageFault):
    """An upload or request body over the configured limit."""

    status = 413


class InsufficientStorage(TransientFault):
    """The archive's storage takes no more files (RFC 4918 §11.5: 507).

    Full, over quota or read-only: a state of the archive that its operator
    ends, after which the same upload succeeds; so a TransientFault.
    """

    status = 507


@dataclass(frozen=True, slots=True)
class RenderedFault:
    """Body, status, and headers of a fault response."""

    body: bytes
    status: int
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_CT = "application/x-votable+xml"


#: Characters XML 1.0 cannot carry (a parameter name or value echoed in a message
#: may hold them); they are written as ``?``.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Return ``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("?", text)


def votable_error_document(message: str, scs: bool = False,
                           infos: tuple[tuple[str, str], ...] = ()) -> bytes:
    """Return a VOTable error document (no TABLE) with ``message``."""
    message = xml_text(message)
    infos = tuple((xml_text(n), xml_text(v)) for n, v in infos)
    extra = "".join(
        f"<INFO name={quoteattr(n)} value={quoteattr(v)}/>" for n, v in infos
    )
    scs_info = f"<INFO name=\"Error\" value={quoteattr(message)}/>" if scs else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="1.3" xmlns="{VOTABLE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"{scs_info}"
        '<RESOURCE type="results">'
        f'<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>'
        f"{extra}</RESOURCE></VOTABLE>\n"
    ).encode()


#: Statuses a cone search keeps: credentials asked for or refused, a client
#: that must slow down (the challenge and Retry-After only work with them).
SCS_KEEP = frozenset({401, 403, 429})


def render_fault(fault: Fault, style: FaultStyle, wants_votable: bool = True
                 ) -> RenderedFault:
    """Render ``fault`` in ``style``.

    Parameters
    ----------
    fault
        The fault raised.
    style
        The blueprint's fault style.
    wants_votable
        False when the caller asked for a non-VOTable format (CSV, TSV...):
        DALI services then answer in text/plain.
    """
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(fault, TransientFault):
        headers = (("Retry-After", str(fault.retry_after)),)
    if fault.status == 401:
        # RFC 9110 §11.6.1: one challenge per scheme the archive accepts.
        headers += (
            ("WWW-Authenticate", 'Bearer realm="PESSTO archive"'),
            ("WWW-Authenticate", 'Basic realm="PESSTO archive", charset="UTF-8"'),
        )
    if style is FaultStyle.TEXT or not wants_votable:
        return RenderedFault((fault.text + "\n").encode(), fault.status,
                             "text/plain; charset=utf-8", headers)
    body = votable_error_document(fault.text, scs=style is FaultStyle.SCS)
    status = fault.status
    if style is FaultStyle.SCS and 400 <= status < 500 and status not in SCS_KEEP:
        # SCS 1.03 §2 answers an error in the VOTable, over HTTP 200: STILTS and
        # TOPCAT read the Error INFO only from a successful answer
        status = 200
    return RenderedFault(body, status, VOTABLE_CT, headers)
