"""SQLAlchemy descriptions of the tables and views the DAL services query.

The published views (``pessto.products``, ``ivoa.obscore``, ...) carry the
access rule; the internal tables (``archive.version``, ``archive.product``) are
only ever queried together with :func:`vo_archive.access.visible`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from vo_archive.vo.obscore import OBSCORE_COLUMNS
from vo_archive.vo.positional import SphereType

metadata = MetaData()
SPOINT = SphereType("spoint")
SPOLY = SphereType("spoly")

_SQL_TYPES = {"char": Text, "double": Float, "int": Integer, "long": BigInteger}


def _obscore_column(name: str, datatype: str, xtype: str | None) -> Column[object]:
    if xtype == "polygon":
        return Column(name, SPOLY)
    if xtype == "timestamp":
        return Column(name, DateTime(timezone=True))
    return Column(name, _SQL_TYPES[datatype]())


#: ivoa.obscore (public view; access rule built in).
obscore = Table(
    "obscore", metadata,
    *(_obscore_column(c.name, c.datatype, c.xtype) for c in OBSCORE_COLUMNS),
    schema="ivoa",
)

#: pessto.products: current visible versions of the logical products.
products = Table(
    "products", metadata,
    Column("product_id", BigInteger), Column("version_id", BigInteger),
    Column("version_no", Integer), Column("product_key", Text),
    Column("filename", Text), Column("instrument", Text), Column("mode", Text),
    Column("category", Text), Column("level", Text), Column("product_type", Text),
    Column("description", Text), Column("eso_phase3", Text), Column("prodcatg", Text),
    Column("filetype", Integer), Column("run_id", Integer), Column("run_name", Text),
    Column("target_id", Integer), Column("object", Text), Column("night", Date),
    Column("date_obs", DateTime), Column("mjd_obs", Float), Column("mjd_end", Float),
    Column("exptime", Float), Column("ra", Float), Column("dec", Float),
    Column("healpix29", BigInteger), Column("fov", Float), Column("naxis1", Integer),
    Column("naxis2", Integer), Column("pixscale", Float), Column("em_min", Float),
    Column("em_max", Float), Column("em_res_power", Float), Column("filter", Text),
    Column("disperser", Text), Column("slit", Text), Column("snr", Float),
    Column("prog_id", Text), Column("procsoft", Text), Column("reduction_mjd", Integer),
    Column("quality", Text), Column("file_size", BigInteger), Column("sha256", Text),
    Column("release_date", DateTime(timezone=True)), Column("publisher_did", Text),
    Column("access_url", Text),
    schema="pessto",
)

#: pessto.targets.
targets = Table(
    "targets", metadata,
    Column("target_id", Integer), Column("name", Text), Column("ra", Float),
    Column("dec", Float), Column("marshall_id", BigInteger),
    Column("classification", Text), Column("redshift", Float),
    schema="pessto",
)

#: archive.product (internal: query with access.visible(release_date)).
product = Table(
    "product", metadata,
    Column("product_id", BigInteger, primary_key=True), Column("product_key", Text),
    Column("instrument", Text), Column("mode", Text), Column("category", Text),
    Column("level", Text), Column("product_type", Text), Column("description", Text),
    Column("run_id", Integer), Column("target_id", Integer), Column("object", Text),
    Column("night", Date), Column("release_date", DateTime(timezone=True)),
    schema="archive",
)

#: archive.version (internal: query joined to product and filtered by visible()).
version = Table(
    "version", metadata,
    Column("version_id", BigInteger, primary_key=True),
    Column("product_id", BigInteger), Column("version_no", Integer),
    Column("is_current", Boolean), Column("filename", Text),
    Column("storage_key", Text), Column("file_size", BigInteger),
    Column("sha256", Text), Column("header", JSONB), Column("hdus", Integer),
    Column("date_obs", DateTime), Column("mjd_obs", Float), Column("mjd_end", Float),
    Column("exptime", Float), Column("ra", Float), Column("dec", Float),
    Column("healpix29", BigInteger), Column("pos", SPOINT), Column("footprint", SPOLY),
    Column("fov", Float), Column("naxis1", Integer), Column("naxis2", Integer),
    Column("pixscale", Float), Column("psf_fwhm", Float), Column("em_min", Float),
    Column("em_max", Float), Column("em_res_power", Float), Column("em_xel", Integer),
    Column("filter", Text), Column("disperser", Text), Column("slit", Text),
    Column("bunit", Text), Column("snr", Float), Column("prog_id", Text),
    Column("procsoft", Text), Column("reduction_mjd", Integer),
    schema="archive",
)

#: archive.provenance (query joined to a visible version).
provenance = Table(
    "provenance", metadata,
    Column("version_id", BigInteger), Column("keyword", Text),
    Column("relation", Text), Column("ref_filename", Text),
    schema="archive",
)

#: archive.target_alias: normalised names of targets (not sensitive).
target_alias = Table(
    "target_alias", metadata,
    Column("alias", Text, primary_key=True), Column("target_id", Integer),
    schema="archive",
)
