"""VOSI capabilities of SIA 2.0 (SIA 2.0 §2.3)."""

from __future__ import annotations

from vo_archive.vo.vosi import Capability, vosi_capabilities

STANDARD_ID = "ivo://ivoa.net/std/SIA#query-2.0"


def capabilities() -> list[Capability]:
    """Return the ``{query}`` capability and the VOSI ones (next to /capabilities)."""
    return [Capability(STANDARD_ID, "/sia2/query", None, "2.0"),
            *vosi_capabilities("/sia2")]


def _input(name: str, datatype: str, description: str, arraysize: str | None = None,
           unit: str | None = None, ucd: str | None = None, xtype: str | None = None,
           options: tuple[str, ...] = ()) -> str:
    from xml.sax.saxutils import quoteattr

    from vo_archive.vo.votable import Field

    inner = ""
    if options:
        inner = "<VALUES>" + "".join(f"<OPTION value={quoteattr(o)}/>"
                                     for o in options) + "</VALUES>"
    return Field(name, datatype, arraysize, unit, ucd, None, xtype,
                 description).element("PARAM", "", inner)


def input_params() -> list[str]:
    """Return the PARAMs of every query parameter (SIA 2.0 §3.1.2)."""
    from siap.sia2.params import POL_STATES

    return [
        # one POS: a GROUP's PARAM names are unique (VOTable 1.4 §4.1, votlint),
        # and DALI 1.1 has no xtype for SIA 2.0's RANGE
        _input("POS", "char", "Region the images must touch, in ICRS degrees: "
               "'CIRCLE ra dec radius', 'RANGE ra1 ra2 dec1 dec2' or "
               "'POLYGON ra1 dec1 ra2 dec2 ...'", "*", "deg", "pos.outline;obs"),
        _input("BAND", "double", "Wavelength interval (vacuum, metres)", "2", "m",
               "em.wl", "interval"),
        _input("TIME", "double", "Time interval (MJD, UTC)", "2", "d", "time.epoch",
               "interval"),
        _input("POL", "char", "Polarisation state", "*", None,
               "meta.code;phys.polarization", options=POL_STATES),
        _input("FOV", "double", "Field of view (diameter) interval", "2", "deg",
               "phys.angSize;instr.fov", "interval"),
        _input("SPATRES", "double", "Spatial resolution interval", "2", "arcsec",
               "pos.angResolution", "interval"),
        _input("EXPTIME", "double", "Exposure time interval", "2", "s",
               "time.duration;obs.exposure", "interval"),
        _input("TIMERES", "double", "Time resolution interval", "2", "s",
               "time.resolution", "interval"),
        _input("SPECRP", "double", "Spectral resolving power interval", "2", None,
               "spect.resolution", "interval"),
        _input("ID", "char", "Publisher DID of a dataset", "*", None,
               "meta.ref.ivoid"),
        _input("COLLECTION", "char", "Data collection", "*", None, "meta.id",
               options=("PESSTO",)),
        _input("FACILITY", "char", "Telescope", "*", None, "meta.id;instr.tel",
               options=("ESO-NTT",)),
        _input("INSTRUMENT", "char", "Instrument", "*", None, "meta.id;instr",
               options=("EFOSC", "SOFI")),
        _input("DPTYPE", "char", "Data product type", "*", None, "meta.code.class",
               options=("image", "cube")),
        _input("CALIB", "int", "Calibration level", None, None,
               "meta.code;obs.calib", options=("0", "1", "2")),
        _input("TARGET", "char", "Target name", "*", None, "meta.id;src"),
        _input("FORMAT", "char", "File format (MIME type)", "*", None,
               "meta.code.mime", options=("application/fits",)),
        _input("MAXREC", "int", "Largest number of records to return", None, None,
               "meta.number"),
        _input("RESPONSEFORMAT", "char", "Format of the response", "*", None,
               "meta.code.mime", options=("application/x-votable+xml",)),
    ]


def self_descriptor() -> str:
    """Return the ``adhoc:service`` resource describing this service (§3.1.2)."""
    from vo_archive.vo.dal import service_descriptor

    return service_descriptor("sia2_this", "/sia2/query", STANDARD_ID, input_params(),
                              name="this",
                              description="SIA 2.0 query of PESSTO images")
