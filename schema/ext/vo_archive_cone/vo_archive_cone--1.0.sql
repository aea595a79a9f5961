-- vo_archive_cone 1.0
\echo Use "CREATE EXTENSION vo_archive_cone" to load this file. \quit

-- The half-open ranges [lo, hi) of order-29 NESTED HEALPix indices that cover
-- the cone (centre and radius in degrees), at an order chosen from the radius
-- and the number of rows of the searched table; the same ranges as
-- vo_archive.sky.covering_ranges computes in Python.
CREATE FUNCTION healpix_cone_ranges(ra_deg float8, dec_deg float8, radius_deg float8,
                                    table_rows float8,
                                    OUT lo bigint, OUT hi bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'healpix_cone_ranges'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
ROWS 8;
