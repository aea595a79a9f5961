"""VOSI capabilities and FORMAT=METADATA description of the SSA service."""

from __future__ import annotations

from vo_archive import web
from vo_archive.vo.vosi import Capability, vosi_capabilities
from vo_archive.vo.votable import Field, Param

SSA_NS = "http://www.ivoa.net/xml/SSA/v1.1"
NAMESPACES = {"ssa": SSA_NS}
STANDARD_ID = "ivo://ivoa.net/std/SSA"


def capabilities() -> list[Capability]:
    """Return the SSA capability (SSA 1.1 schema element order) and VOSI ones."""
    s = web.settings()
    body = ("<complianceLevel>query</complianceLevel>"
            "<dataSource>pointed</dataSource><creationType>archival</creationType>"
            "<supportedFrame>ICRS</supportedFrame>"
            "<maxSearchRadius>180</maxSearchRadius>"
            f"<maxRecords>{s.maxrec_hard}</maxRecords>"
            f"<defaultMaxRecords>{s.maxrec_default}</defaultMaxRecords>"
            "<maxAperture>1</maxAperture>"
            "<testQuery><pos><long>359.9995</long><lat>-12.5</lat></pos>"
            "<size>0.1</size></testQuery>")
    return [Capability(STANDARD_ID, "/ssap?", "ssa:SimpleSpectralAccess", "1.1", body,
                       use="base"),
            *vosi_capabilities("/ssap")]


def _input(name: str, datatype: str, description: str, value: str = "",
           unit: str | None = None, arraysize: str | None = "*") -> Param:
    return Param(Field(f"INPUT:{name}", datatype, arraysize, unit,
                       description=description, id=f"INPUT_{name}"), value)


def input_params(maxrec_default: int) -> list[Param]:
    """Return the ``INPUT:`` PARAMs of FORMAT=METADATA (SSA 1.1 §6)."""
    return [
        _input("REQUEST", "char", "queryData or getData", "queryData"),
        _input("POS", "char", "Search position 'ra,dec' (ICRS degrees)"),
        _input("SIZE", "double", "Diameter of the search cone", "0.1", "deg", None),
        _input("BAND", "char", "Wavelength range list 'lo/hi' (metres)", unit="m"),
        _input("TIME", "char", "Time range 'start/end' (ISO 8601, UTC)"),
        _input("FORMAT", "char", "all, compliant, native, votable, fits, metadata "
               "or MIME types", "ALL"),
        _input("TARGETNAME", "char", "Name of the target (any alias)"),
        _input("TARGETCLASS", "char", "Classification of the target"),
        _input("PUBDID", "char", "Publisher dataset identifier"),
        _input("COLLECTION", "char", "Data collection (PESSTO)"),
        _input("SPECRP", "double", "Smallest resolving power", arraysize=None),
        _input("SNR", "double", "Smallest signal-to-noise ratio", arraysize=None),
        _input("REDSHIFT", "char", "Redshift range 'lo/hi' of the target"),
        _input("MAXREC", "int", "Largest number of records", str(maxrec_default),
               arraysize=None),
    ]
