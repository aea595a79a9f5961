"""Archive core: runs, targets, products and their versions, provenance, ingest journal.

Revision ID: 0001_core
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = ("core",)
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS pg_sphere;

CREATE SCHEMA IF NOT EXISTS archive;
CREATE SCHEMA IF NOT EXISTS pessto;
CREATE SCHEMA IF NOT EXISTS ivoa;

COMMENT ON SCHEMA archive IS 'Internal tables of the PESSTO archive (not published)';
COMMENT ON SCHEMA pessto IS 'PESSTO products, versions, runs and targets as published';
COMMENT ON SCHEMA ivoa IS 'IVOA data models (ObsCore)';

CREATE TABLE archive_meta.setting (
    name  text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO archive_meta.setting VALUES
    ('publisher_authority', 'ivo://pessto.ia2.inaf.it');

CREATE TABLE archive.run (
    run_id      serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    eso_run     text NOT NULL,
    programme   text NOT NULL,
    instrument  text NOT NULL,
    first_night date NOT NULL,
    last_night  date NOT NULL,
    explicit    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (first_night <= last_night)
);
CREATE INDEX run_eso ON archive.run (eso_run, instrument, first_night);
COMMENT ON TABLE archive.run IS
    'Observing run: ESO run (programme + run letter), instrument, block of nights';

CREATE TABLE archive.target (
    target_id      serial PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    ra             double precision,
    dec            double precision,
    healpix29      bigint,
    marshall_id    bigint UNIQUE,
    classification text,
    redshift       double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX target_healpix ON archive.target (healpix29);
COMMENT ON TABLE archive.target IS 'Transients and other observed objects';

CREATE TABLE archive.target_alias (
    alias     text PRIMARY KEY,
    target_id integer NOT NULL REFERENCES archive.target ON DELETE CASCADE
);
COMMENT ON COLUMN archive.target_alias.alias IS
    'Normalised name: lower case, without spaces, hyphens and underscores';

CREATE TABLE archive.product (
    product_id      bigserial PRIMARY KEY,
    product_key     text NOT NULL,
    instrument      text NOT NULL CHECK (instrument IN ('EFOSC', 'SOFI')),
    mode            text NOT NULL CHECK (mode IN ('imaging', 'spectroscopy')),
    category        text NOT NULL CHECK (category IN ('calib', 'science')),
    level           text NOT NULL CHECK (level IN ('raw', 'intermediate', 'final')),
    product_type    text NOT NULL,
    description     text NOT NULL,
    eso_phase3      text NOT NULL CHECK (eso_phase3 IN ('yes', 'flagged', 'no')),
    prodcatg        text,
    filetype        integer,
    run_id          integer REFERENCES archive.run,
    target_id       integer REFERENCES archive.target,
    object          text,
    night           date,
    release_date    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instrument, product_key)
);
CREATE INDEX product_run ON archive.product (run_id);
CREATE INDEX product_target ON archive.product (target_id);
CREATE INDEX product_night ON archive.product (night);
COMMENT ON COLUMN archive.product.product_key IS
    'File name without the reduction-MJD token and extension: one logical product';
COMMENT ON COLUMN archive.product.release_date IS
    'Public from this time on; NULL means never public (proprietary)';

CREATE TABLE archive.version (
    version_id     bigserial PRIMARY KEY,
    product_id     bigint NOT NULL REFERENCES archive.product,
    version_no     integer NOT NULL,
    is_current     boolean NOT NULL DEFAULT false,
    filename       text NOT NULL,
    storage_key    text NOT NULL,
    file_size      bigint NOT NULL,
    sha256         char(64) NOT NULL,
    md5            char(32) NOT NULL,
    procsoft       text,
    reduction_mjd  integer,
    quality        text,
    data_rel       text,
    header         jsonb NOT NULL,
    hdus           integer NOT NULL,
    date_obs       timestamp,
    mjd_obs        double precision,
    mjd_end        double precision,
    exptime        double precision,
    ra             double precision,
    dec            double precision,
    healpix29      bigint,
    pos            spoint,
    footprint      spoly,
    fov            double precision,
    naxis1         integer,
    naxis2         integer,
    pixscale       double precision,
    psf_fwhm       double precision,
    em_min         double precision,
    em_max         double precision,
    em_res_power   double precision,
    em_xel         integer,
    filter         text,
    disperser      text,
    slit           text,
    bunit          text,
    snr            double precision,
    prog_id        text,
    ob_id          bigint,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, version_no),
    UNIQUE (product_id, sha256),
    CHECK (healpix29 IS NULL OR healpix29 BETWEEN 0 AND 12 * 4::bigint ^ 29 - 1)
);
-- lz4 compresses the FITS header documents several times faster than pglz
ALTER TABLE archive.version ALTER COLUMN header SET COMPRESSION lz4;
CREATE UNIQUE INDEX version_one_current ON archive.version (product_id) WHERE is_current;
CREATE INDEX version_healpix ON archive.version (healpix29);
CREATE INDEX version_pos ON archive.version USING gist (pos);
CREATE INDEX version_footprint ON archive.version USING gist (footprint);
CREATE INDEX version_filename ON archive.version (filename);
CREATE INDEX version_sha256 ON archive.version (sha256);
CREATE INDEX version_storage ON archive.version (storage_key);
CREATE INDEX version_mjd ON archive.version (mjd_obs);
COMMENT ON TABLE archive.version IS
    'One archived file: a version of a logical product. Never updated but for is_current';
COMMENT ON COLUMN archive.version.healpix29 IS
    'HEALPix NESTED index of (ra, dec) at order 29 (nside 2^29), from healpy';

CREATE TABLE archive.provenance (
    version_id   bigint NOT NULL REFERENCES archive.version,
    keyword      text NOT NULL,
    relation     text NOT NULL
                 CHECK (relation IN ('raw', 'parent', 'calibration', 'associated')),
    ref_filename text NOT NULL,
    PRIMARY KEY (version_id, keyword)
);
CREATE INDEX provenance_ref ON archive.provenance (ref_filename);
COMMENT ON TABLE archive.provenance IS
    'Inputs named in a file''s header: PROVn (raw), TRACEn (parent), '
    'ZEROCOR/FLATCOR/ARC/SENSFUN/... (calibration), ASSONn (associated)';

CREATE TABLE archive.ingest_journal (
    storage_key text NOT NULL,
    session_id  bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (storage_key, session_id)
);
CREATE SEQUENCE archive.ingest_session_seq;
COMMENT ON TABLE archive.ingest_journal IS
    'Files an ingest is about to place in storage; cleared in the same transaction '
    'that records them. Rows of a dead session name files to check and remove.';

-- The access rule, in one place: a row is visible when public, or when the
-- transaction was opened for a caller who may see proprietary data.
CREATE FUNCTION archive.visible(release timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce($1 <= now(), false)
        OR coalesce(current_setting('vo_archive.proprietary', true), '') = 'on'
$$;

CREATE FUNCTION archive.publisher_did(product_id bigint, version_no integer)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (SELECT value FROM archive_meta.setting
            WHERE name = 'publisher_authority')
           || '/pessto?' || $1 || '/v' || $2
$$;

CREATE VIEW pessto.runs AS
SELECT r.run_id, r.name, r.eso_run, r.programme, r.instrument,
       r.first_night, r.last_night
FROM archive.run r;

CREATE VIEW pessto.targets AS
SELECT t.target_id, t.name, t.ra, t.dec, t.marshall_id, t.classification,
       t.redshift
FROM archive.target t;

CREATE VIEW pessto.versions AS
SELECT v.version_id, v.product_id, v.version_no, v.is_current, v.filename,
       v.file_size, v.sha256, v.md5, v.procsoft, v.reduction_mjd, v.quality,
       v.data_rel, v.ingested_at,
       archive.publisher_did(v.product_id, v.version_no) AS publisher_did,
       '/products/' || v.product_id || '/versions/' || v.version_no AS access_url
FROM archive.version v
JOIN archive.product p USING (product_id)
WHERE archive.visible(p.release_date);

CREATE VIEW pessto.products AS
SELECT p.product_id, v.version_id, v.version_no, p.product_key, v.filename,
       p.instrument, p.mode, p.category, p.level, p.product_type, p.description,
       p.eso_phase3, p.prodcatg, p.filetype, p.run_id, r.name AS run_name,
       p.target_id, coalesce(t.name, p.object) AS object, p.night,
       v.date_obs, v.mjd_obs, v.mjd_end, v.exptime, v.ra, v.dec, v.healpix29,
       v.fov, v.naxis1, v.naxis2, v.pixscale, v.em_min, v.em_max,
       v.em_res_power, v.filter, v.disperser, v.slit, v.snr, v.prog_id,
       v.procsoft, v.reduction_mjd, v.quality, v.file_size, v.sha256,
       p.release_date,
       archive.publisher_did(p.product_id, v.version_no) AS publisher_did,
       '/products/' || v.product_id || '/versions/' || v.version_no AS access_url
FROM archive.product p
JOIN archive.version v ON v.product_id = p.product_id AND v.is_current
LEFT JOIN archive.run r ON r.run_id = p.run_id
LEFT JOIN archive.target t ON t.target_id = p.target_id
WHERE archive.visible(p.release_date);

CREATE VIEW pessto.provenance AS
SELECT pv.version_id, pv.keyword, pv.relation, pv.ref_filename
FROM archive.provenance pv
JOIN archive.version v USING (version_id)
JOIN archive.product p USING (product_id)
WHERE archive.visible(p.release_date);

CREATE VIEW ivoa.obscore AS
SELECT
    CASE p.mode WHEN 'imaging' THEN 'image' ELSE 'spectrum' END::text
        AS dataproduct_type,
    p.product_type AS dataproduct_subtype,
    CASE p.level WHEN 'raw' THEN 0 WHEN 'intermediate' THEN 1 ELSE 2 END
        AS calib_level,
    'PESSTO'::text AS obs_collection,
    p.product_key AS obs_id,
    archive.publisher_did(p.product_id, v.version_no) AS obs_publisher_did,
    '/products/' || v.product_id || '/versions/' || v.version_no AS access_url,
    'application/fits'::text AS access_format,
    ((v.file_size + 1023) / 1024)::bigint AS access_estsize,
    coalesce(t.name, p.object) AS target_name,
    v.ra AS s_ra,
    v.dec AS s_dec,
    v.fov AS s_fov,
    v.footprint AS s_region,
    v.psf_fwhm AS s_resolution,
    CASE p.mode WHEN 'imaging' THEN v.naxis1 END::bigint AS s_xel1,
    CASE p.mode WHEN 'imaging' THEN v.naxis2 END::bigint AS s_xel2,
    v.mjd_obs AS t_min,
    v.mjd_end AS t_max,
    v.exptime AS t_exptime,
    v.exptime AS t_resolution,
    1::bigint AS t_xel,
    v.em_min,
    v.em_max,
    v.em_res_power,
    v.em_xel::bigint AS em_xel,
    CASE p.mode WHEN 'imaging' THEN 'phot.count'
         ELSE 'phot.flux.density;em.wl' END::text AS o_ucd,
    NULL::text AS pol_states,
    NULL::bigint AS pol_xel,
    'ESO-NTT'::text AS facility_name,
    p.instrument AS instrument_name,
    v.filename AS obs_title,
    p.release_date AS obs_release_date,
    v.prog_id AS proposal_id,
    'em.wl'::text AS em_ucd,
    'm'::text AS em_unit,
    CASE WHEN p.release_date <= now() THEN 'public' ELSE 'proprietary' END::text
        AS data_rights,
    p.product_id AS pessto_product_id,
    v.version_no AS pessto_version,
    p.level AS pessto_level,
    p.category AS pessto_category,
    r.name AS pessto_run
FROM archive.product p
JOIN archive.version v ON v.product_id = p.product_id AND v.is_current
LEFT JOIN archive.run r ON r.run_id = p.run_id
LEFT JOIN archive.target t ON t.target_id = p.target_id
WHERE archive.visible(p.release_date);
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS ivoa.obscore, pessto.provenance, pessto.products,
    pessto.versions, pessto.targets, pessto.runs;
DROP FUNCTION IF EXISTS archive.publisher_did(bigint, integer);
DROP FUNCTION IF EXISTS archive.visible(timestamptz);
DROP TABLE IF EXISTS archive.ingest_journal, archive.provenance, archive.version,
    archive.product, archive.target_alias, archive.target, archive.run,
    archive_meta.setting;
DROP SEQUENCE IF EXISTS archive.ingest_session_seq;
"""


def upgrade() -> None:
    """Create the core tables, the access rule and the published views."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Remove the core tables (data is lost)."""
    op.execute(DOWNGRADE)
