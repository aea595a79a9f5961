"""ADQL 2.1 functions: CENTROID and the user-defined functions TAP declares.

Revision ID: 0012_adql
Revises: 0002_tap

In the ``tap_adql`` schema (on the search path of user queries):

- ``centroid(scircle|spoly|spoint) -> spoint`` (ADQL 2.1 §4.2.5): a circle's
  centre, a polygon's vertices' mean direction, a point itself;
- ``ivo_hasword(haystack, needle) -> integer``: 1 when ``needle``'s words stand
  in ``haystack`` in that order, case-insensitively (as DaCHS defines it);
- ``ivo_healpix_index(order, ra, dec) -> bigint``: the NESTED HEALPix index of
  a position in degrees (the HEALPix projection's formulas, Górski et al.
  2005; checked against healpy in the tests).

``ivo_string_agg`` needs no function: the translation writes PostgreSQL's
``string_agg``.
"""

from __future__ import annotations

from alembic import op

revision = "0012_adql"
down_revision = "0002_tap"
branch_labels = ("adql",)
depends_on = None

UPGRADE = r"""
CREATE FUNCTION tap_adql.centroid(c scircle) RETURNS spoint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT center($1) $$;
CREATE FUNCTION tap_adql.centroid(p spoint) RETURNS spoint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $1 $$;
-- pgSphere writes polygons as {(lon , lat),...} in radians (its default
-- output, which the archive never changes)
CREATE FUNCTION tap_adql.centroid(p spoly) RETURNS spoint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    v text[];
    x double precision := 0;
    y double precision := 0;
    z double precision := 0;
    lon double precision;
    lat double precision;
BEGIN
    FOR v IN SELECT regexp_matches(p::text,
            '\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)', 'g') LOOP
        lon := v[1]::double precision;
        lat := v[2]::double precision;
        x := x + cos(lat) * cos(lon);
        y := y + cos(lat) * sin(lon);
        z := z + sin(lat);
    END LOOP;
    IF x = 0 AND y = 0 AND z = 0 THEN
        RETURN NULL;
    END IF;
    RETURN spoint(atan2(y, x), atan2(z, sqrt(x * x + y * y)));
END
$fn$;

CREATE FUNCTION tap_adql.ivo_hasword(haystack text, needle text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $1 IS NULL OR $2 IS NULL THEN NULL
                WHEN to_tsvector('simple', $1) @@ phraseto_tsquery('simple', $2)
                THEN 1 ELSE 0 END
$$;

CREATE FUNCTION tap_adql.ivo_healpix_index(hpx_order integer, ra_deg double precision,
                                           dec_deg double precision) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    nside bigint;
    z double precision;
    za double precision;
    tt double precision;
    tp double precision;
    tmp double precision;
    jp bigint;
    jm bigint;
    ifp bigint;
    ifm bigint;
    face bigint;
    ntt bigint;
    ix bigint;
    iy bigint;
    pix bigint := 0;
    b integer;
BEGIN
    IF hpx_order IS NULL OR ra_deg IS NULL OR dec_deg IS NULL THEN
        RETURN NULL;
    END IF;
    IF hpx_order < 0 OR hpx_order > 29 OR dec_deg < -90 OR dec_deg > 90 THEN
        RAISE EXCEPTION 'ivo_healpix_index: order must be 0 to 29 and dec -90 to 90';
    END IF;
    nside := 1::bigint << hpx_order;
    z := sin(radians(dec_deg));
    za := abs(z);
    tt := (ra_deg - 360.0 * floor(ra_deg / 360.0)) / 90.0;  -- in [0, 4)
    IF tt >= 4 THEN
        tt := 0;
    END IF;
    IF za <= 2.0 / 3.0 THEN
        jp := floor(nside * (0.5 + tt - z * 0.75));
        jm := floor(nside * (0.5 + tt + z * 0.75));
        ifp := jp >> hpx_order;
        ifm := jm >> hpx_order;
        IF ifp = ifm THEN
            face := ifp | 4;
        ELSIF ifp < ifm THEN
            face := ifp;
        ELSE
            face := ifm + 8;
        END IF;
        ix := jm & (nside - 1);
        iy := nside - (jp & (nside - 1)) - 1;
    ELSE
        ntt := least(3, floor(tt)::bigint);
        tp := tt - ntt;
        tmp := nside * sqrt(3.0 * (1.0 - za));
        jp := least(floor(tp * tmp)::bigint, nside - 1);
        jm := least(floor((1.0 - tp) * tmp)::bigint, nside - 1);
        IF z >= 0 THEN
            face := ntt;
            ix := nside - jm - 1;
            iy := nside - jp - 1;
        ELSE
            face := ntt + 8;
            ix := jp;
            iy := jm;
        END IF;
    END IF;
    FOR b IN 0 .. hpx_order - 1 LOOP
        pix := pix | (((ix >> b) & 1) << (2 * b)) | (((iy >> b) & 1) << (2 * b + 1));
    END LOOP;
    RETURN face * nside * nside + pix;
END
$fn$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tap_adql TO pessto_tap_reader;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS tap_adql.centroid(scircle), tap_adql.centroid(spoint),
    tap_adql.centroid(spoly), tap_adql.ivo_hasword(text, text),
    tap_adql.ivo_healpix_index(integer, double precision, double precision);
"""


def upgrade() -> None:
    """Create the functions."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the functions."""
    op.execute(DOWNGRADE)
