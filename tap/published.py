"""The published schema of the TAP service, described once.

Everything TAP publishes is listed here: ``ivoa.ObsCore`` (from
:data:`vo_archive.vo.obscore.OBSCORE_COLUMNS`), the ``pessto`` views users join,
and ``TAP_SCHEMA`` itself. TAP_SCHEMA rows, the VOSI tables document, DDL
comments on the views and result FIELD metadata are all generated from
:data:`SCHEMAS`; nothing is maintained by hand in a second place.

Names follow TAP 1.1 §4: ``table_name`` is the queryable, schema-qualified
name; column names that are ADQL reserved words (``dec``, ``level``, ``size``)
are given delimited (``"dec"``), as ADQL 2.1 §2.1.3 requires.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vo_archive.vo.obscore import OBSCORE_COLUMNS, Column


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A foreign key between published tables (TAP_SCHEMA.keys)."""

    key_id: str
    from_table: str
    target_table: str
    columns: tuple[tuple[str, str], ...]
    description: str


@dataclass(frozen=True, slots=True)
class Table:
    """A published table or view."""

    name: str
    """Queryable name as written in ADQL (``ivoa.ObsCore``)."""
    description: str
    columns: tuple[Column, ...]
    table_type: str = "view"
    utype: str | None = None
    db_name: str | None = None
    """Name in PostgreSQL when it differs from ``name`` lower-cased."""

    @property
    def schema(self) -> str:
        """Return the schema part of the name."""
        return self.name.split(".", 1)[0]

    @property
    def sql_name(self) -> str:
        """Return the PostgreSQL name (schema.table, lower case)."""
        return self.db_name or self.name.lower()

    def column(self, name: str) -> Column | None:
        """Return the column called ``name`` (case-insensitive, quotes ignored)."""
        want = unquote(name).lower()
        for c in self.columns:
            if unquote(c.name).lower() == want:
                return c
        return None


@dataclass(frozen=True, slots=True)
class Schema:
    """A published schema."""

    name: str
    description: str
    tables: tuple[Table, ...]
    utype: str | None = None


def unquote(name: str) -> str:
    """Return an identifier without ADQL delimiters."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _col(name: str, datatype: str, description: str, unit: str | None = None,
         ucd: str | None = None, arraysize: str | None = None,
         xtype: str | None = None, principal: bool = False,
         indexed: bool = False) -> Column:
    return Column(name, datatype, description, unit, ucd, None, arraysize, xtype,
                  std=False, principal=principal, indexed=indexed)


def _text(name: str, description: str, ucd: str | None = None,
          principal: bool = False, indexed: bool = False) -> Column:
    return _col(name, "char", description, None, ucd, "*", None, principal, indexed)


def _time(name: str, description: str, ucd: str) -> Column:
    return _col(name, "char", description, None, ucd, "*", "timestamp")


_PID = _col("product_id", "long", "Archive identifier of the logical product", None,
            "meta.id;meta.main", principal=True, indexed=True)
_VID = _col("version_id", "long", "Archive identifier of the file (version)", None,
            "meta.id", indexed=True)
_VNO = _col("version_no", "int", "Version number of the product (1, 2, ...)", None,
            "meta.version", principal=True)
_RA = _col("ra", "double", "Right ascension (ICRS)", "deg", "pos.eq.ra;meta.main",
           principal=True, indexed=True)
_DEC = _col('"dec"', "double", "Declination (ICRS)", "deg", "pos.eq.dec;meta.main",
            principal=True, indexed=True)
_DID = _text("publisher_did", "IVOA dataset identifier of this file",
             "meta.ref.ivoid", indexed=True)
_URL = _text("access_url", "URL of the FITS file", "meta.ref.url", principal=True)

PRODUCTS = Table("pessto.products", "PESSTO products (current version of each), "
                 "with run and target names", (
    _PID, _VID, _VNO,
    _text("product_key", "Logical product: file name without reduction MJD",
          "meta.id", indexed=True),
    _text("filename", "File name of the current version", "meta.id;meta.file",
          principal=True),
    _text("instrument", "EFOSC or SOFI", "meta.id;instr", principal=True),
    _text("mode", "imaging or spectroscopy", "meta.code", principal=True),
    _text("category", "calib or science", "meta.code"),
    _text('"level"', "raw, intermediate or final", "meta.code;obs.calib",
          principal=True),
    _text("product_type", "PESSTO product type (from FILETYPE)", "meta.code.class",
          principal=True),
    _text("description", "What the product is", "meta.note"),
    _text("eso_phase3", "ESO Phase 3 status: yes, flagged or no", "meta.code"),
    _text("prodcatg", "ESO PRODCATG of the file", "meta.code.class"),
    _col("filetype", "int", "PESSTO FILETYPE code", None, "meta.code"),
    _col("run_id", "int", "Observing run (pessto.runs)", None, "meta.id",
         indexed=True),
    _text("run_name", "Name of the observing run", "meta.id"),
    _col("target_id", "int", "Target (pessto.targets)", None, "meta.id;src",
         indexed=True),
    _text("object", "Name of the observed object", "meta.id;src", principal=True),
    _time("night", "Observing night (local date of the evening)", "time.epoch;obs"),
    _time("date_obs", "Start of the observation (UTC)", "time.start;obs.exposure"),
    _col("mjd_obs", "double", "Start of the observation (MJD, UTC)", "d",
         "time.start;obs.exposure", principal=True, indexed=True),
    _col("mjd_end", "double", "End of the observation (MJD, UTC)", "d",
         "time.end;obs.exposure"),
    _col("exptime", "double", "Exposure time", "s", "time.duration;obs.exposure",
         principal=True),
    _RA, _DEC,
    _col("healpix29", "long", "HEALPix NESTED index of (ra, dec) at order 29", None,
         "pos.healpix", indexed=True),
    _col("fov", "double", "Diameter of the field covered", "deg",
         "phys.angSize;instr.fov"),
    _col("naxis1", "int", "Pixels along the first axis", None, "meta.number"),
    _col("naxis2", "int", "Pixels along the second axis", None, "meta.number"),
    _col("pixscale", "double", "Pixel scale", "arcsec", "instr.pixel"),
    _col("em_min", "double", "Shortest wavelength covered", "m", "em.wl;stat.min"),
    _col("em_max", "double", "Longest wavelength covered", "m", "em.wl;stat.max"),
    _col("em_res_power", "double", "Spectral resolving power", None,
         "spect.resolution"),
    _text("filter", "Filter", "meta.id;instr.filter", principal=True),
    _text("disperser", "Grism or grating", "meta.id;instr.setup"),
    _text("slit", "Slit", "meta.id;instr.setup"),
    _col("snr", "double", "Signal-to-noise ratio", None, "stat.snr"),
    _text("prog_id", "ESO programme and run", "meta.id;obs.proposal"),
    _text("procsoft", "Reduction software and version", "meta.software"),
    _col("reduction_mjd", "int", "MJD of the reduction", "d", "time.processing"),
    _text("quality", "Quality flag", "meta.code.qual"),
    _col("file_size", "long", "File size", "byte", "phys.size;meta.file"),
    _text("sha256", "SHA-256 checksum of the file", "meta.checksum"),
    _time("release_date", "Public from this date (empty: proprietary)",
          "time.release"),
    _DID, _URL,
))

VERSIONS = Table("pessto.versions", "Every archived file: all versions of every "
                 "product", (
    _VID, _PID, _VNO,
    _col("is_current", "boolean", "Whether this is the current version", None,
         "meta.code"),
    _text("filename", "File name", "meta.id;meta.file", principal=True),
    _col("file_size", "long", "File size", "byte", "phys.size;meta.file"),
    _text("sha256", "SHA-256 checksum", "meta.checksum"),
    _text("md5", "MD5 checksum", "meta.checksum"),
    _text("procsoft", "Reduction software and version", "meta.software"),
    _col("reduction_mjd", "int", "MJD of the reduction", "d", "time.processing"),
    _text("quality", "Quality flag", "meta.code.qual"),
    _text("data_rel", "Data release", "meta.id"),
    _time("ingested_at", "When the file was archived (UTC)", "time.processing"),
    _DID, _URL,
))

RUNS = Table("pessto.runs", "Observing runs: ESO run, instrument, block of nights", (
    _col("run_id", "int", "Archive identifier of the run", None, "meta.id;meta.main",
         principal=True, indexed=True),
    _text("name", "Run name", "meta.id", principal=True),
    _text("eso_run", "ESO run identifier", "meta.id;obs.proposal", principal=True),
    _text("programme", "ESO programme", "meta.id;obs.proposal"),
    _text("instrument", "EFOSC or SOFI", "meta.id;instr", principal=True),
    _time("first_night", "First night of the run", "time.start"),
    _time("last_night", "Last night of the run", "time.end"),
))

TARGETS = Table("pessto.targets", "Transients and other observed objects", (
    _col("target_id", "int", "Archive identifier of the target", None,
         "meta.id;meta.main", principal=True, indexed=True),
    _text("name", "Target name", "meta.id;src", principal=True, indexed=True),
    _RA, _DEC,
    _col("marshall_id", "long", "PESSTO marshall identifier", None, "meta.id.cross"),
    _text("classification", "Spectroscopic classification", "src.class",
          principal=True),
    _col("redshift", "double", "Redshift", None, "src.redshift", principal=True),
))

PROVENANCE = Table("pessto.provenance", "Inputs named in each file's header: raw "
                   "frames, parents, calibrations, associated files", (
    _col("version_id", "long", "The file (pessto.versions)", None, "meta.id",
         principal=True, indexed=True),
    _text("keyword", "Header keyword naming the input (PROV1, ZEROCOR, ...)",
          "meta.id;meta.fits", principal=True),
    _text("relation", "raw, parent, calibration or associated", "meta.code",
          principal=True),
    _text("ref_filename", "File name of the input", "meta.id;meta.file",
          principal=True, indexed=True),
))

CLASSIFICATIONS = Table(
    "pessto.classifications", "Spectral classifications of the final 1D science "
    "spectra by template cross-correlation: one row per file, classifier version "
    "and template-library version (is_latest marks the newest of each file)", (
    _col("classification_id", "long", "Archive identifier of the classification",
         None, "meta.id;meta.main", principal=True, indexed=True),
    _PID, _VID, _VNO,
    _col("is_current", "boolean", "Whether the file is the current version of its "
         "product", None, "meta.code"),
    _col("target_id", "int", "Target (pessto.targets)", None, "meta.id;src",
         indexed=True),
    _col("run_id", "int", "Observing run (pessto.runs)", None, "meta.id",
         indexed=True),
    _text("classifier_version", "Version of the classifier", "meta.version"),
    _text("library_version", "Version of the template library", "meta.version"),
    _text("sn_type", "Type: the type with the largest share of good matches "
          "(empty when no match was good)", "src.class", principal=True),
    _text("sn_subtype", "Subtype within the type", "src.class"),
    _col("fraction", "double", "Share of the best good matches that are of this "
         "type", None, "stat.value"),
    _col("redshift", "double", "Redshift from the good matches of the type", None,
         "src.redshift", principal=True),
    _col("redshift_err", "double", "Error of the redshift", None,
         "stat.error;src.redshift"),
    _col("age", "double", "Age: days from maximum light", "d", "time.phase",
         principal=True),
    _col("age_err", "double", "Error of the age", "d", "stat.error;time.phase"),
    _col("rlap", "double", "rlap (Tonry-Davis r times overlap) of the best match",
         None, "stat.correlation", principal=True),
    _col("good", "boolean", "Whether any template matched above the rlap "
         "threshold", None, "meta.code.qual", principal=True),
    _text("problem", "Why the file could not be classified, if it could not",
          "meta.note"),
    _text("best_template", "Template of the best match", "meta.id"),
    _col("n_matches", "int", "Number of matches kept", None, "meta.number"),
    _time("classified_at", "When the file was classified (UTC)", "time.processing"),
    _col("is_latest", "boolean", "Whether this is the newest classification of "
         "the file", None, "meta.code"),
    _DID,
))

CLASSIFICATION_MATCHES = Table(
    "pessto.classification_matches", "Best template matches of each "
    "classification, best first", (
    _col("classification_id", "long", "The classification "
         "(pessto.classifications)", None, "meta.id", principal=True, indexed=True),
    _col("rank", "int", "Rank of the match (1 = best)", None, "meta.number",
         principal=True),
    _text("template", "Template (supernova) of the match", "meta.id",
          principal=True),
    _text("sn_type", "Type of the template", "src.class", principal=True),
    _text("sn_subtype", "Subtype of the template", "src.class"),
    _col("phase", "double", "Age of the template epoch: days from maximum", "d",
         "time.phase", principal=True),
    _col("redshift", "double", "Redshift of the correlation peak", None,
         "src.redshift", principal=True),
    _col("redshift_err", "double", "Error of the redshift (from the peak width)",
         None, "stat.error;src.redshift"),
    _col("r", "double", "Tonry-Davis r: peak height over the antisymmetric noise",
         None, "stat.correlation"),
    _col("lap", "double", "Overlap in ln(wavelength) of spectrum and template",
         None, "stat.value"),
    _col("rlap", "double", "r times lap", None, "stat.correlation", principal=True),
))

MARSHALL_CLASSIFICATIONS = Table(
    "pessto.marshall_classifications", "The PESSTO Marshall on each matched target "
    "(members only): its latest classification, ATel references, priority and "
    "status, next to the archive's own classification", (
    _col("target_id", "int", "Target (pessto.targets)", None, "meta.id;src",
         principal=True, indexed=True),
    _col("marshall_id", "long", "The Marshall's identifier of the transient", None,
         "meta.id.cross", principal=True, indexed=True),
    _text("marshall_name", "Name of the transient in the Marshall", "meta.id;src",
          principal=True),
    _text("status", "Marshall status: inbox, review, classified, followup or "
          "archived", "meta.code.status", principal=True),
    _col("priority", "short", "Marshall follow-up priority (1 highest to 4)", None,
         "meta.code"),
    _text("sn_type", "Type of the Marshall's latest classification", "src.class",
          principal=True),
    _col("redshift", "double", "Redshift of the Marshall's latest classification",
         None, "src.redshift", principal=True),
    _col("phase_days", "float", "Phase of the latest classification: days from "
         "maximum light", "d", "time.phase"),
    _text("classified_by", "Who made the Marshall's latest classification",
          "meta.id.PI"),
    _time("classified_at", "When the Marshall's latest classification was made "
          "(UTC)", "time.epoch"),
    _col("n_classifications", "int", "Number of Marshall classifications of the "
         "transient", None, "meta.number"),
    _text("atels", "ATel references of the transient (ATel #n, ...)",
          "meta.bib"),
    _text("archive_type", "The archive's own classification: the latest good "
          "template classification of the target's spectra, else the target's",
          "src.class"),
    _col("archive_redshift", "double", "Redshift of the archive's classification",
         None, "src.redshift"),
    _time("archive_classified_at", "When the archive classified the spectrum (UTC)",
          "time.processing"),
    _col("types_disagree", "boolean", "Whether the Marshall's type and the "
         "archive's disagree (a type agrees with its subtypes; empty when either "
         "is missing)", None, "meta.code.qual", principal=True),
))


def _tap_obscore_columns() -> tuple[Column, ...]:
    """ObsCore columns as TAP publishes them.

    ``s_region`` is declared as an ADQL REGION (``char``, STC-S text, no
    unit): STILTS taplint (3.4, the Debian version CI runs) accepts only
    character types for the ObsCore REGION column and reports a DALI polygon
    array as an error (OBS-TYPX, OBS-CUNI). Other services (SIA 2.0) keep the
    DALI polygon of :data:`vo_archive.vo.obscore.OBSCORE_COLUMNS`.
    """
    out = []
    for c in OBSCORE_COLUMNS:
        if c.name == "s_region":
            c = dataclasses.replace(c, datatype="char", arraysize="*",
                                    xtype="adql:REGION", unit=None,
                                    description=c.description + " (STC-S)")
        out.append(c)
    return tuple(out)


OBSCORE = Table("ivoa.ObsCore", "ObsCore 1.1: every current PESSTO file",
                _tap_obscore_columns(),
                utype="ivo://ivoa.net/std/obscore#table-core-1.1",
                db_name="ivoa.obscore")

_TS = "TAP_SCHEMA"


def _ts(name: str, description: str, cols: tuple[Column, ...]) -> Table:
    return Table(f"{_TS}.{name}", description, cols, table_type="table",
                 db_name=f"tap_schema.{name}")


def _std(name: str, datatype: str, description: str, arraysize: str | None = "*"
         ) -> Column:
    return Column(name, datatype, description, arraysize=arraysize, std=True,
                  principal=True)


TAP_SCHEMA_TABLES = (
    _ts("schemas", "Schemas published by this service", (
        _std("schema_name", "char", "Schema name for reference to tap_schema.schemas"),
        _std("utype", "char", "lists the utypes of schemas in the tableset"),
        _std("description", "char", "describes schemas in the tableset"),
        _std("schema_index", "int", "recommended sort order when listing schemas",
             None),
    )),
    _ts("tables", "Tables published by this service", (
        _std("schema_name", "char", "the schema this table belongs to"),
        _std("table_name", "char", "the fully qualified table name"),
        _std("table_type", "char", "one of: table view"),
        _std("utype", "char", "lists the utype of tables in the tableset"),
        _std("description", "char", "describes tables in the tableset"),
        _std("table_index", "int", "recommended sort order when listing tables",
             None),
    )),
    _ts("columns", "Columns of the published tables", (
        _std("table_name", "char", "the table this column belongs to"),
        _std("column_name", "char", "the column name"),
        _std("datatype", "char", "the ADQL datatype as in section 2.5"),
        _std("arraysize", "char", "VOTable arraysize of the column"),
        _std("xtype", "char", "a DALI or custom extended type annotation"),
        _std('"size"', "int", "deprecated: use arraysize", None),
        _std("description", "char", "describes the columns in the tableset"),
        _std("utype", "char", "lists the utypes of columns in the tableset"),
        _std("unit", "char", "the unit in VOUnit format"),
        _std("ucd", "char", "the UCD of column if any"),
        _std("indexed", "int", "an indexed column; 1 means true, 0 means false",
             None),
        _std("principal", "int", "a principal column; 1 means true, 0 means false",
             None),
        _std("std", "int", "a standard column; 1 means true, 0 means false", None),
        _std("column_index", "int", "recommended sort order when listing columns",
             None),
    )),
    _ts("keys", "Foreign keys between published tables", (
        _std("key_id", "char", "unique key identifier"),
        _std("from_table", "char", "fully qualified table name"),
        _std("target_table", "char", "fully qualified table name"),
        _std("description", "char", "description of this key"),
        _std("utype", "char", "utype of this key"),
    )),
    _ts("key_columns", "Columns of the foreign keys", (
        _std("key_id", "char", "unique key identifier"),
        _std("from_column", "char", "key column name in the from_table"),
        _std("target_column", "char", "key column name in the target_table"),
    )),
)

SCHEMAS: tuple[Schema, ...] = (
    Schema("ivoa", "IVOA data models: the ObsCore table of all PESSTO files",
           (OBSCORE,)),
    Schema("pessto", "PESSTO products, versions, runs, targets, provenance and "
           "spectral classifications as published by the archive",
           (PRODUCTS, VERSIONS, RUNS, TARGETS, PROVENANCE, CLASSIFICATIONS,
            CLASSIFICATION_MATCHES, MARSHALL_CLASSIFICATIONS)),
    Schema(_TS, "Description of the tables published by this TAP service",
           TAP_SCHEMA_TABLES),
)

KEYS: tuple[ForeignKey, ...] = (
    ForeignKey("products_run", "pessto.products", "pessto.runs",
               (("run_id", "run_id"),), "Run of a product"),
    ForeignKey("products_target", "pessto.products", "pessto.targets",
               (("target_id", "target_id"),), "Target of a product"),
    ForeignKey("versions_product", "pessto.versions", "pessto.products",
               (("product_id", "product_id"),), "Product a file is a version of"),
    ForeignKey("provenance_version", "pessto.provenance", "pessto.versions",
               (("version_id", "version_id"),), "File whose header names the input"),
    ForeignKey("classifications_version", "pessto.classifications",
               "pessto.versions", (("version_id", "version_id"),),
               "File a classification is of"),
    ForeignKey("classifications_product", "pessto.classifications",
               "pessto.products", (("product_id", "product_id"),),
               "Product a classified file is a version of"),
    ForeignKey("classifications_target", "pessto.classifications",
               "pessto.targets", (("target_id", "target_id"),),
               "Target of a classified spectrum"),
    ForeignKey("classifications_run", "pessto.classifications", "pessto.runs",
               (("run_id", "run_id"),), "Run of a classified spectrum"),
    ForeignKey("marshall_target", "pessto.marshall_classifications",
               "pessto.targets", (("target_id", "target_id"),),
               "Target the Marshall's transient is matched to"),
    ForeignKey("matches_classification", "pessto.classification_matches",
               "pessto.classifications",
               (("classification_id", "classification_id"),),
               "Classification a match belongs to"),
    ForeignKey("obscore_product", "ivoa.ObsCore", "pessto.products",
               (("pessto_product_id", "product_id"),), "PESSTO product of a file"),
    ForeignKey("ts_tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas",
               (("schema_name", "schema_name"),), "Schema of a table"),
    ForeignKey("ts_columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables",
               (("table_name", "table_name"),), "Table of a column"),
    ForeignKey("ts_keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables",
               (("from_table", "table_name"),), "Table a key starts from"),
    ForeignKey("ts_keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables",
               (("target_table", "table_name"),), "Table a key points to"),
    ForeignKey("ts_key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys",
               (("key_id", "key_id"),), "Key of a key column"),
)

TABLES: dict[str, Table] = {t.name.lower(): t for s in SCHEMAS for t in s.tables}
SCHEMA_NAMES = frozenset(s.name.lower() for s in SCHEMAS)


def find_table(schema: str, table: str) -> Table | None:
    """Return the published table ``schema.table`` (names case-insensitive)."""
    return TABLES.get(f"{unquote(schema)}.{unquote(table)}".lower())
