"""VOSI capabilities of the cone search (SCS 1.03 §3, ConeSearch 1.0 schema)."""

from __future__ import annotations

from vo_archive import web
from vo_archive.vo.vosi import Capability, vosi_capabilities

CS_NS = "http://www.ivoa.net/xml/ConeSearch/v1.0"
NAMESPACES = {"cs": CS_NS}


def capabilities() -> list[Capability]:
    """Return the cone search's capabilities (with a test query of the demo sky)."""
    body = (f"<maxSR>180</maxSR><maxRecords>{web.settings().maxrec_hard}</maxRecords>"
            "<verbosity>true</verbosity>"
            "<testQuery><ra>359.9995</ra><dec>-12.5</dec><sr>0.1</sr></testQuery>")
    return [Capability("ivo://ivoa.net/std/ConeSearch", "/scs?", "cs:ConeSearch",
                       "1.03", body, use="base"),
            *vosi_capabilities("/scs")]
