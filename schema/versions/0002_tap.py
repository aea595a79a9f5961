"""TAP: TAP_SCHEMA, ADQL helper functions, the TAP reader role, UWS jobs, job queue.

Revision ID: 0002_tap
Revises: 0001_core

- ``tap_schema``: the five TAP 1.1 §4 tables, filled from ``tap.published``.
- ``tap_adql``: SQL functions ADQL needs and pgSphere 1.2 lacks (COORD1/2,
  square degrees, the DISTANCE-within test), on the search path of user queries.
- ``pessto_tap_reader``: the role user queries run as; it holds USAGE/SELECT on
  the published schemas (ivoa, pessto, tap_schema) and nothing else.
- Expression indexes so that CONTAINS(POINT(ra, dec), ...) on the views uses
  GiST, and ``archive.publisher_did`` made SECURITY DEFINER so the reader role
  needs no access to ``archive_meta``.
- ``uws``: async jobs, their inline uploads and their stored results.
- ``procrastinate``: the durable job queue's own schema (procrastinate 3.10).
"""

from __future__ import annotations

from importlib import resources

from alembic import op
from sqlalchemy import text

revision = "0002_tap"
down_revision = "0001_core"
branch_labels = ("tap",)
depends_on = None

READER_ROLE = "pessto_tap_reader"

UPGRADE = r"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pessto_tap_reader') THEN
        CREATE ROLE pessto_tap_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database
END
$$;
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'pessto_tap_reader', 'MEMBER') THEN
        EXECUTE format('GRANT pessto_tap_reader TO %I', current_user);
    END IF;
END
$$;

CREATE SCHEMA tap_schema;
COMMENT ON SCHEMA tap_schema IS 'TAP_SCHEMA: description of the published tables';
CREATE TABLE tap_schema.schemas (
    schema_name  text PRIMARY KEY,
    utype        text,
    description  text,
    schema_index integer
);
CREATE TABLE tap_schema.tables (
    schema_name  text NOT NULL,
    table_name   text PRIMARY KEY,
    table_type   text NOT NULL,
    utype        text,
    description  text,
    table_index  integer
);
CREATE TABLE tap_schema.columns (
    table_name   text NOT NULL,
    column_name  text NOT NULL,
    datatype     text NOT NULL,
    arraysize    text,
    xtype        text,
    size         integer,
    description  text,
    utype        text,
    unit         text,
    ucd          text,
    indexed      integer NOT NULL,
    principal    integer NOT NULL,
    std          integer NOT NULL,
    column_index integer,
    PRIMARY KEY (table_name, column_name)
);
CREATE TABLE tap_schema.keys (
    key_id       text PRIMARY KEY,
    from_table   text NOT NULL,
    target_table text NOT NULL,
    description  text,
    utype        text
);
CREATE TABLE tap_schema.key_columns (
    key_id        text NOT NULL,
    from_column   text NOT NULL,
    target_column text NOT NULL
);

CREATE SCHEMA tap_adql;
COMMENT ON SCHEMA tap_adql IS 'Functions ADQL translations call (on the search path)';
CREATE FUNCTION tap_adql.coord1(p spoint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT degrees(long($1)) $$;
CREATE FUNCTION tap_adql.coord2(p spoint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT degrees(lat($1)) $$;
CREATE FUNCTION tap_adql.square_degrees(steradians double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 * (180.0 / pi()) ^ 2 $$;
-- DISTANCE(a, b) < r: written as containment in a circle so that GiST indexes
-- on either point are used once the function is inlined.
CREATE FUNCTION tap_adql.spoint_dwithin(a spoint, b spoint, r double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 @ scircle($2, $3) $$;

-- Index the positions the views expose as plain ra/dec, in the form ADQL
-- geometry translates to: spoint(radians(ra), radians(dec)).
CREATE INDEX version_radec_sphere ON archive.version
    USING gist (spoint(radians(ra), radians(dec)));
CREATE INDEX target_radec_sphere ON archive.target
    USING gist (spoint(radians(ra), radians(dec)));

-- The reader role must not need archive_meta: read the authority as owner.
CREATE OR REPLACE FUNCTION archive.publisher_did(product_id bigint, version_no integer)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog AS $$
    SELECT (SELECT value FROM archive_meta.setting
            WHERE name = 'publisher_authority')
           || '/pessto?' || $1 || '/v' || $2
$$;

GRANT USAGE ON SCHEMA ivoa, pessto, tap_schema, tap_adql TO pessto_tap_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA ivoa, pessto, tap_schema TO pessto_tap_reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tap_adql TO pessto_tap_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA ivoa, pessto, tap_schema
    GRANT SELECT ON TABLES TO pessto_tap_reader;

CREATE SCHEMA uws;
COMMENT ON SCHEMA uws IS 'UWS 1.1 asynchronous jobs (not published)';
CREATE TABLE uws.job (
    job_id             text PRIMARY KEY,
    runner             text NOT NULL DEFAULT 'tap',
    run_id             text,
    base_url           text,
    owner_name         text,
    owner_roles        text[] NOT NULL DEFAULT '{}',
    phase              text NOT NULL DEFAULT 'PENDING' CHECK (phase IN
        ('PENDING', 'QUEUED', 'EXECUTING', 'COMPLETED', 'ERROR', 'ABORTED',
         'UNKNOWN', 'HELD', 'SUSPENDED', 'ARCHIVED')),
    creation_time      timestamptz NOT NULL DEFAULT now(),
    start_time         timestamptz,
    end_time           timestamptz,
    execution_duration integer NOT NULL,
    destruction        timestamptz NOT NULL,
    parameters         jsonb NOT NULL DEFAULT '[]',
    error_type         text,
    error_message      text,
    backend_pid        integer,
    result_type        text,
    result_rows        bigint,
    result_size        bigint
);
CREATE INDEX job_owner_time ON uws.job (owner_name, creation_time);
CREATE INDEX job_destruction ON uws.job (destruction);
CREATE INDEX job_active ON uws.job (phase) WHERE phase IN ('QUEUED', 'EXECUTING');
COMMENT ON COLUMN uws.job.runner IS
    'Which service runs the job (vo_archive.vo.uws.worker.RUNNERS)';
COMMENT ON COLUMN uws.job.parameters IS
    'Submitted parameters in order, as [[name, value], ...] with upper-case names';
COMMENT ON COLUMN uws.job.backend_pid IS
    'PostgreSQL backend running the query, so ABORT can cancel it';
CREATE TABLE uws.upload (
    job_id  text NOT NULL REFERENCES uws.job ON DELETE CASCADE,
    name    text NOT NULL,
    content bytea NOT NULL,
    PRIMARY KEY (job_id, name)
);
COMMENT ON TABLE uws.upload IS 'Inline (param:) uploads of a job, kept for the worker';
CREATE TABLE uws.result_chunk (
    job_id text NOT NULL REFERENCES uws.job ON DELETE CASCADE,
    seq    integer NOT NULL,
    data   bytea NOT NULL,
    PRIMARY KEY (job_id, seq)
);
COMMENT ON TABLE uws.result_chunk IS
    'A job''s result document in chunks of about 1 MiB, served until destruction';

CREATE SCHEMA procrastinate;
COMMENT ON SCHEMA procrastinate IS 'procrastinate job queue (runs UWS jobs)';
"""

DOWNGRADE = r"""
DROP SCHEMA IF EXISTS procrastinate CASCADE;
DROP SCHEMA IF EXISTS uws CASCADE;
DROP SCHEMA IF EXISTS tap_schema CASCADE;
DROP SCHEMA IF EXISTS tap_adql CASCADE;
DROP INDEX IF EXISTS archive.version_radec_sphere, archive.target_radec_sphere;
REVOKE ALL ON ALL TABLES IN SCHEMA ivoa, pessto FROM pessto_tap_reader;
REVOKE USAGE ON SCHEMA ivoa, pessto FROM pessto_tap_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA ivoa, pessto
    REVOKE SELECT ON TABLES FROM pessto_tap_reader;
"""


PIN_SEARCH_PATH = r"""
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'procrastinate'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = procrastinate, public', f);
    END LOOP;
END
$$;
"""


def _procrastinate_schema() -> str:
    return resources.files("procrastinate").joinpath("sql/schema.sql").read_text()


def upgrade() -> None:
    """Create TAP_SCHEMA, the reader role, the UWS tables and the job queue."""
    bind = op.get_bind()
    op.execute(UPGRADE)
    # procrastinate's schema refers to its objects unqualified: create them in
    # their own schema. Run through the DBAPI cursor: the SQL holds % and :.
    old_path = bind.execute(text("SELECT current_setting('search_path')")).scalar_one()
    cur = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cur.execute("SELECT set_config('search_path', 'procrastinate, public', true)")
    cur.execute(_procrastinate_schema())
    cur.execute("SELECT set_config('search_path', %s, true)", (old_path,))
    # Its functions and triggers then work whatever the caller's search path
    # (the web servers queue jobs by calling procrastinate_defer_jobs_v1).
    cur.execute(PIN_SEARCH_PATH)
    cur.close()
    from tap.tap_schema import sync_tap_schema

    sync_tap_schema(bind)


def downgrade() -> None:
    """Remove the TAP objects (jobs and results are lost)."""
    op.execute(DOWNGRADE)
