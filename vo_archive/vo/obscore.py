"""ObsCore 1.1 column metadata of ``ivoa.obscore``: written once, used everywhere.

TAP_SCHEMA, VOSI tables, the SIA 2.0 response FIELDs and the ObsCore view's
documentation are generated from :data:`OBSCORE_COLUMNS`. Names, units, UCDs
and utypes follow ObsCore 1.1 Table 4 / Appendix C with errata (see
``../shared/ivoa-checklist.md`` §7b); unitless columns have no unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from vo_archive.vo.votable import Field

OBSCORE_UTYPE_PREFIX = "obscore:"
DATALINK_FORMAT = "application/x-votable+xml;content=datalink"


@dataclass(frozen=True, slots=True)
class Column:
    """A published column: its VOTable and TAP_SCHEMA description.

    ``datatype``, ``arraysize`` and ``xtype`` are VOTable terms, as TAP 1.1
    TAP_SCHEMA.columns uses them.
    """

    name: str
    datatype: str
    description: str
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    arraysize: str | None = None
    xtype: str | None = None
    std: bool = True
    principal: bool = False
    indexed: bool = False
    mandatory: bool = False

    def field(self, id_: str | None = None) -> Field:
        """Return the VOTable FIELD of this column."""
        return Field(self.name, self.datatype, self.arraysize, self.unit, self.ucd,
                     self.utype, self.xtype, self.description, id_)


def _c(name: str, datatype: str, description: str, unit: str | None, ucd: str,
       utype: str | None, arraysize: str | None = None, xtype: str | None = None,
       principal: bool = False, indexed: bool = False, mandatory: bool = True,
       std: bool = True) -> Column:
    return Column(name, datatype, description, unit, ucd,
                  OBSCORE_UTYPE_PREFIX + utype if utype else None, arraysize, xtype,
                  std, principal, indexed, mandatory)


#: The columns of ivoa.obscore, in view order (schema/versions/0001_core.py).
OBSCORE_COLUMNS: tuple[Column, ...] = (
    _c("dataproduct_type", "char", "Data product type: image or spectrum", None,
       "meta.code.class", "ObsDataset.dataProductType", "*", principal=True),
    _c("dataproduct_subtype", "char", "PESSTO product type (from FILETYPE)", None,
       "meta.code.class", "ObsDataset.dataProductSubtype", "*", mandatory=False),
    _c("calib_level", "int", "Calibration level: 0 raw, 1 intermediate, 2 final",
       None, "meta.code;obs.calib", "ObsDataset.calibLevel", principal=True),
    _c("obs_collection", "char", "Name of the data collection", None, "meta.id",
       "DataID.collection", "*"),
    _c("obs_id", "char", "Logical product: file name without the reduction MJD",
       None, "meta.id", "DataID.observationID", "*"),
    _c("obs_publisher_did", "char", "IVOA dataset identifier of this file", None,
       "meta.ref.ivoid", "Curation.publisherDID", "*", principal=True, indexed=True),
    _c("access_url", "char", "URL of the FITS file", None, "meta.ref.url",
       "Access.reference", "*", principal=True),
    _c("access_format", "char", "MIME type of the file", None, "meta.code.mime",
       "Access.format", "*"),
    _c("access_estsize", "long", "Estimated file size", "kbyte", "phys.size;meta.file",
       "Access.size"),
    _c("target_name", "char", "Name of the observed object", None, "meta.id;src",
       "Target.name", "*", principal=True),
    _c("s_ra", "double", "Right ascension (ICRS) of the target or image centre",
       "deg", "pos.eq.ra",
       "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
       principal=True, indexed=True),
    _c("s_dec", "double", "Declination (ICRS) of the target or image centre", "deg",
       "pos.eq.dec", "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
       principal=True, indexed=True),
    _c("s_fov", "double", "Diameter of the covered region", "deg",
       "phys.angSize;instr.fov", "Char.SpatialAxis.Coverage.Bounds.Extent.diameter"),
    _c("s_region", "double", "Footprint: image corners or the slit position", "deg",
       "pos.outline;obs.field", "Char.SpatialAxis.Coverage.Support.Area", "*",
       "polygon", indexed=True),
    _c("s_resolution", "double", "Spatial resolution (seeing FWHM)", "arcsec",
       "pos.angResolution", "Char.SpatialAxis.Resolution.Refval.value"),
    _c("s_xel1", "long", "Number of pixels along the first axis", None, "meta.number",
       "Char.SpatialAxis.numBins1"),
    _c("s_xel2", "long", "Number of pixels along the second axis", None, "meta.number",
       "Char.SpatialAxis.numBins2"),
    _c("t_min", "double", "Start of the exposure (MJD, UTC)", "d",
       "time.start;obs.exposure", "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
       principal=True, indexed=True),
    _c("t_max", "double", "End of the exposure (MJD, UTC)", "d",
       "time.end;obs.exposure", "Char.TimeAxis.Coverage.Bounds.Limits.StopTime"),
    _c("t_exptime", "double", "Total exposure time", "s", "time.duration;obs.exposure",
       "Char.TimeAxis.Coverage.Support.Extent", principal=True),
    _c("t_resolution", "double", "Temporal resolution (the exposure time)", "s",
       "time.resolution", "Char.TimeAxis.Resolution.Refval.value"),
    _c("t_xel", "long", "Number of time samples", None, "meta.number",
       "Char.TimeAxis.numBins"),
    _c("em_min", "double", "Shortest wavelength covered", "m", "em.wl;stat.min",
       "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", principal=True),
    _c("em_max", "double", "Longest wavelength covered", "m", "em.wl;stat.max",
       "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", principal=True),
    _c("em_res_power", "double", "Spectral resolving power", None, "spect.resolution",
       "Char.SpectralAxis.Resolution.ResolPower.refVal"),
    _c("em_xel", "long", "Number of spectral samples", None, "meta.number",
       "Char.SpectralAxis.numBins"),
    _c("o_ucd", "char", "UCD of the observable", None, "meta.ucd",
       "Char.ObservableAxis.ucd", "*"),
    _c("pol_states", "char", "Polarisation states (none)", None,
       "meta.code;phys.polarization", "Char.PolarizationAxis.stateList", "*"),
    _c("pol_xel", "long", "Number of polarisation samples", None, "meta.number",
       "Char.PolarizationAxis.numBins"),
    _c("facility_name", "char", "Telescope", None, "meta.id;instr.tel",
       "Provenance.ObsConfig.Facility.name", "*"),
    _c("instrument_name", "char", "Instrument", None, "meta.id;instr",
       "Provenance.ObsConfig.Instrument.name", "*", principal=True),
    _c("obs_title", "char", "File name", None, "meta.title;obs", "DataID.title", "*",
       mandatory=False),
    _c("obs_release_date", "char", "Date the product becomes or became public", None,
       "time.release", "Curation.releaseDate", "*", "timestamp", mandatory=False),
    _c("proposal_id", "char", "ESO programme and run", None, "meta.id;obs.proposal",
       "Provenance.Proposal.identifier", "*", mandatory=False),
    _c("em_ucd", "char", "UCD of the spectral axis", None, "meta.ucd",
       "Char.SpectralAxis.ucd", "*", mandatory=False),
    _c("em_unit", "char", "Unit of the spectral axis", None, "meta.unit",
       "Char.SpectralAxis.unit", "*", mandatory=False),
    _c("data_rights", "char", "public or proprietary", None, "meta.code",
       "Curation.rights", "*", mandatory=False),
    _c("pessto_product_id", "long", "PESSTO archive product identifier", None,
       "meta.id", None, std=False, mandatory=False, indexed=True),
    _c("pessto_version", "int", "Version number of the product", None,
       "meta.version", None, std=False, mandatory=False),
    _c("pessto_level", "char", "Processing level: raw, intermediate or final", None,
       "meta.code", None, "*", std=False, mandatory=False),
    _c("pessto_category", "char", "calib or science", None, "meta.code", None, "*",
       std=False, mandatory=False),
    _c("pessto_run", "char", "Observing run", None, "meta.id", None, "*", std=False,
       mandatory=False),
)

OBSCORE_BY_NAME = {c.name: c for c in OBSCORE_COLUMNS}
