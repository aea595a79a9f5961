"""VOSI capabilities of ``/classify``: the sync and async interfaces, VOSI ones.

There is no IVOA standard for classification services: the capabilities name
the archive's own standard identifiers for the sync and async interfaces.
"""

from __future__ import annotations

from vo_archive.vo.vosi import Capability, vosi_capabilities

STANDARD_ID = "ivo://pessto.ia2.inaf.it/std/classify"
SYNC_ID = STANDARD_ID + "#sync-1.0"
ASYNC_ID = STANDARD_ID + "#async-1.0"
#: Execution duration of async jobs, s (one classification takes under a second).
ASYNC_DURATION = 600

RETENTION_DAYS = 7

def _interface(query_type: str) -> str:
    # One queryType and no <param> elements: pyvo (1.5) reports a second
    # queryType and any param of a ParamHTTP interface, though VODataService
    # allows them. The parameters are described in /openapi.json and in the
    # DataLink service descriptor.
    return (f"<queryType>{query_type}</queryType>"
            "<resultType>application/x-votable+xml</resultType>")


def capabilities() -> list[Capability]:
    """Return the classification capabilities and the VOSI ones."""
    return [
        Capability(SYNC_ID, "/classify/sync", None, "1.0",
                   interface_body=_interface("GET")),
        Capability(ASYNC_ID, "/classify/async", None, "1.0",
                   interface_body=_interface("POST")),
        *vosi_capabilities("/classify"),
    ]
