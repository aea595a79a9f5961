"""VOSI capabilities and FORMAT=METADATA description of SIA 1.0."""

from __future__ import annotations

from vo_archive import web
from vo_archive.vo.vosi import Capability, vosi_capabilities
from vo_archive.vo.votable import Field, Param

SIA_NS = "http://www.ivoa.net/xml/SIA/v1.1"
NAMESPACES = {"sia": SIA_NS}
STANDARD_ID = "ivo://ivoa.net/std/SIA"


def capabilities() -> list[Capability]:
    """Return the SIA 1.0 capability and the VOSI ones."""
    body = ("<imageServiceType>Pointed</imageServiceType>"
            "<maxQueryRegionSize><long>360</long><lat>180</lat></maxQueryRegionSize>"
            "<maxImageExtent><long>360</long><lat>180</lat></maxImageExtent>"
            "<maxImageSize>4096</maxImageSize><maxFileSize>1000000000</maxFileSize>"
            f"<maxRecords>{web.settings().maxrec_hard}</maxRecords>"
            "<testQuery><pos><long>155.53</long><lat>-64.71</lat></pos>"
            "<size><long>0.2</long><lat>0.2</lat></size></testQuery>")
    return [Capability(STANDARD_ID, "/siap?", "sia:SimpleImageAccess", "1.0", body,
                       use="base"),
            *vosi_capabilities("/siap")]


def input_params() -> list[Param]:
    """Return the input PARAMs of FORMAT=METADATA (SIA 1.0 §7.1)."""
    def p(name: str, datatype: str, description: str, value: str = "",
          unit: str | None = None, arraysize: str | None = "*") -> Param:
        return Param(Field(f"INPUT:{name}", datatype, arraysize, unit,
                           description=description, id=f"INPUT_{name}"), value)

    return [
        p("POS", "char", "Search position 'ra,dec' (ICRS degrees)"),
        p("SIZE", "char", "Size of the search box 'width[,height]'", "0.1", "deg"),
        p("INTERSECT", "char", "COVERS, ENCLOSED, CENTER or OVERLAPS", "OVERLAPS"),
        p("FORMAT", "char", "ALL, GRAPHIC, METADATA or MIME types", "ALL"),
        p("MAXREC", "int", "Largest number of records",
          str(web.settings().maxrec_default), arraysize=None),
    ]
