"""Row-level security: user queries never evaluate an expression on a hidden row.

Revision ID: 0009_row_security
Revises: 0005_auth, 0008_inline_did

The published views filtered with ``archive.visible()``, but a view is no
security barrier: PostgreSQL pushes the caller's WHERE clause down to the base
tables and may evaluate it on a hidden row before the view's filter, so an
error ("division by zero") or its absence told an ADQL caller what a hidden
row holds. Now the rows are hidden by the base tables themselves:

- ``pessto_published`` (NOLOGIN) owns the published views (``ivoa.obscore``
  and ``pessto.*``). A view reads its tables with its owner's rights, and the
  row-level security policies of ``archive.product``, ``version``,
  ``provenance``, ``run`` and ``target`` apply to that owner: unless the
  querying role is the archive's own (the tables' owner, which runs this
  migration: ingest, the trusted DAL statements with values the server
  binds, which keep their own filters), a row is visible only under the
  access rule. So for the TAP reader (``pessto_tap_reader``, the role user
  ADQL runs as) and any other role: PostgreSQL evaluates policy conditions
  before any condition of the query that is not LEAKPROOF, so the caller's
  expressions (WHERE, SELECT list, ORDER BY, joins, uploads, aggregates,
  subqueries) only ever see visible rows. Roles other than the owner reading
  the tables directly get no rows.
- ``archive.version.release_date`` repeats its product's release date (kept
  by triggers), so the version's policy is a test of the row itself, not a
  subquery per row; run and target policies ask whether one of their products
  is visible, as the views did.
- ADQL's ``POINT(ra, dec)`` on columns becomes ``tap_adql.sky_point(ra,
  dec)`` (:mod:`tap.adql.translate`), indexed by GiST on versions and
  targets. A condition is used in an index only when every function applied
  to a column in it is LEAKPROOF: ``radians()`` is not (it raises "underflow"
  for subnormal angles), ``sky_point`` is written not to raise. Marking it and
  pgSphere's point-in-circle test LEAKPROOF needs a superuser (the embedded
  cluster's owner is one); without it cone searches in ADQL stay correct but
  scan instead of using the index (``vo-archive db init`` says so).
"""

from __future__ import annotations

from alembic import op

revision = "0009_row_security"
down_revision = ("0005_auth", "0008_inline_did")
branch_labels = ("rls",)
depends_on = None

UPGRADE = r"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pessto_published') THEN
        CREATE ROLE pessto_published NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database
END
$$;
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'pessto_published', 'MEMBER') THEN
        EXECUTE format('GRANT pessto_published TO %I', current_user);
    END IF;
END
$$;
-- the views' owner reads the tables behind them, and may own objects in the
-- published schemas (ALTER ... OWNER requires it); it cannot log in
GRANT USAGE ON SCHEMA archive TO pessto_published;
GRANT USAGE, CREATE ON SCHEMA ivoa, pessto TO pessto_published;
GRANT SELECT ON archive.product, archive.version, archive.provenance, archive.run,
    archive.target TO pessto_published;

-- a version's release date is its product's, repeated for the policy
ALTER TABLE archive.version ADD COLUMN release_date timestamptz;
COMMENT ON COLUMN archive.version.release_date IS
    'The product''s release_date (kept by triggers): the row-level policy tests it';
UPDATE archive.version v SET release_date = p.release_date
FROM archive.product p WHERE p.product_id = v.product_id;

CREATE FUNCTION archive.version_release() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- FOR SHARE waits for a concurrent change of the product's release date
    -- and then reads the committed one: the copy is never stale
    SELECT p.release_date INTO NEW.release_date FROM archive.product p
    WHERE p.product_id = NEW.product_id FOR SHARE;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER version_release BEFORE INSERT OR UPDATE OF product_id, release_date
ON archive.version FOR EACH ROW EXECUTE FUNCTION archive.version_release();

CREATE FUNCTION archive.product_release() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE archive.version SET release_date = NEW.release_date
    WHERE product_id = NEW.product_id
      AND release_date IS DISTINCT FROM NEW.release_date;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER product_release AFTER UPDATE OF release_date ON archive.product
FOR EACH ROW WHEN (OLD.release_date IS DISTINCT FROM NEW.release_date)
EXECUTE FUNCTION archive.product_release();

-- Policies restrict every role but the one that owns the tables and runs
-- this migration (the archive's own: ingest, the DAL statements whose values
-- the server binds), which keeps the views' own filters. The TAP reader, and
-- any role granted access to the views later, see what the access rule
-- allows. current_user is the querying role, not the views' owner.
ALTER TABLE archive.product ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive.version ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive.provenance ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive.run ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive.target ENABLE ROW LEVEL SECURITY;
-- Whether a run, a target or a provenance row has a product anyone may see:
-- a function, not a subquery in the policy, so that a statement that never
-- needs it (the caller sees everything) does not set up a subplan at every
-- execution. SECURITY DEFINER: the querying role has no right on the tables.
CREATE FUNCTION archive.run_public(integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE AS $fn$
    SELECT EXISTS (SELECT 1 FROM archive.product p
                   WHERE p.run_id OPERATOR(pg_catalog.=) $1
                   AND p.release_date OPERATOR(pg_catalog.<=) pg_catalog.now())
$fn$;
CREATE FUNCTION archive.target_public(integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE AS $fn$
    SELECT EXISTS (SELECT 1 FROM archive.product p
                   WHERE p.target_id OPERATOR(pg_catalog.=) $1
                   AND p.release_date OPERATOR(pg_catalog.<=) pg_catalog.now())
$fn$;
CREATE FUNCTION archive.version_public(bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE AS $fn$
    SELECT EXISTS (SELECT 1 FROM archive.version v
                   WHERE v.version_id OPERATOR(pg_catalog.=) $1
                   AND v.release_date OPERATOR(pg_catalog.<=) pg_catalog.now())
$fn$;

-- archive.visible() is written out in the policies: the caller's scope (and
-- whether the role is trusted) is a scalar subquery, read once per query as
-- an InitPlan instead of once per row (a third of a full-table scan's time)
DO $do$
DECLARE
    everything text := format(
        '(SELECT current_user = %L OR coalesce(current_setting('
        '''vo_archive.proprietary'', true), '''') = ''on'')', current_user);
BEGIN
    EXECUTE format($p$
        CREATE POLICY published ON archive.product FOR SELECT TO pessto_published
        USING (%s OR coalesce(release_date <= now(), false)) $p$, everything);
    EXECUTE format($p$
        CREATE POLICY published ON archive.version FOR SELECT TO pessto_published
        USING (%s OR coalesce(release_date <= now(), false)) $p$, everything);
    EXECUTE format($p$
        CREATE POLICY published ON archive.provenance FOR SELECT TO pessto_published
        USING (%s OR archive.version_public(version_id)) $p$, everything);
    EXECUTE format($p$
        CREATE POLICY published ON archive.run FOR SELECT TO pessto_published
        USING (%s OR archive.run_public(run_id)) $p$, everything);
    EXECUTE format($p$
        CREATE POLICY published ON archive.target FOR SELECT TO pessto_published
        USING (%s OR archive.target_public(target_id)) $p$, everything);
END
$do$;

-- POINT(ra, dec) of ADQL on columns. PL/pgSQL so that it is never inlined:
-- its LEAKPROOF mark (given below where the role may) then holds, and the
-- GiST index on it can serve a cone search under the policies. It does not
-- raise for any argument: radians() would for subnormal angles (those are 0
-- here), abs(), radians() of other values and pgSphere's spoint() do not.
DO $do$
DECLARE sphere name := (SELECT n.nspname FROM pg_extension e
                        JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'pg_sphere');
BEGIN
    -- names qualified in the body: an index expression must not depend on
    -- the search path of whoever writes a row
    EXECUTE format($f$
        CREATE FUNCTION tap_adql.sky_point(double precision, double precision)
        RETURNS %1$I.spoint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
        BEGIN
            RETURN %1$I.spoint(
                CASE WHEN pg_catalog.abs($1) < 1e-300 THEN 0
                     ELSE pg_catalog.radians($1) END,
                CASE WHEN pg_catalog.abs($2) < 1e-300 THEN 0
                     ELSE pg_catalog.radians($2) END);
        END
        $fn$ $f$, sphere);
END
$do$;
GRANT EXECUTE ON FUNCTION tap_adql.sky_point(double precision, double precision)
    TO pessto_tap_reader;
-- A circle around a column position (a TAP_UPLOAD crossmatch): like
-- scircle(centre, radius), which raises for a radius outside [0, 90°], but
-- NULL (no match) there instead, so that it never raises and can be LEAKPROOF:
-- the crossmatch then uses the GiST index of the published positions.
DO $do$
DECLARE sphere name := (SELECT n.nspname FROM pg_extension e
                        JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'pg_sphere');
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION tap_adql.sky_circle(%1$I.spoint, double precision)
        RETURNS %1$I.scircle LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
        BEGIN
            IF $2 >= 0 AND $2 <= pg_catalog.pi() / 2 THEN
                RETURN %1$I.scircle($1, $2);
            END IF;
            RETURN NULL;
        END
        $fn$ $f$, sphere);
END
$do$;
GRANT EXECUTE ON FUNCTION tap_adql.sky_circle(spoint, double precision)
    TO pessto_tap_reader;
-- DISTANCE(a, b) < r with b a column position
CREATE FUNCTION tap_adql.sky_dwithin(a spoint, b spoint, r double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 @ tap_adql.sky_circle($2, $3) $$;
GRANT EXECUTE ON FUNCTION tap_adql.sky_dwithin(spoint, spoint, double precision)
    TO pessto_tap_reader;
CREATE INDEX version_sky_point ON archive.version USING gist
    (tap_adql.sky_point(ra, dec));
CREATE INDEX target_sky_point ON archive.target USING gist
    (tap_adql.sky_point(ra, dec));
DROP INDEX archive.version_radec_sphere, archive.target_radec_sphere;
"""

DOWNGRADE = r"""
CREATE INDEX IF NOT EXISTS version_radec_sphere ON archive.version
    USING gist (spoint(radians(ra), radians(dec)));
CREATE INDEX IF NOT EXISTS target_radec_sphere ON archive.target
    USING gist (spoint(radians(ra), radians(dec)));
DROP INDEX IF EXISTS archive.version_sky_point, archive.target_sky_point;
DROP FUNCTION IF EXISTS tap_adql.sky_dwithin(spoint, spoint, double precision),
    tap_adql.sky_circle(spoint, double precision),
    tap_adql.sky_point(double precision, double precision);
DROP POLICY IF EXISTS published ON archive.product;
DROP POLICY IF EXISTS published ON archive.version;
DROP POLICY IF EXISTS published ON archive.provenance;
DROP POLICY IF EXISTS published ON archive.run;
DROP POLICY IF EXISTS published ON archive.target;
ALTER TABLE archive.product DISABLE ROW LEVEL SECURITY;
ALTER TABLE archive.version DISABLE ROW LEVEL SECURITY;
ALTER TABLE archive.provenance DISABLE ROW LEVEL SECURITY;
ALTER TABLE archive.run DISABLE ROW LEVEL SECURITY;
ALTER TABLE archive.target DISABLE ROW LEVEL SECURITY;
DROP TRIGGER IF EXISTS product_release ON archive.product;
DROP TRIGGER IF EXISTS version_release ON archive.version;
DROP FUNCTION IF EXISTS archive.product_release(), archive.version_release(),
    archive.run_public(integer), archive.target_public(integer),
    archive.version_public(bigint);
ALTER TABLE archive.version DROP COLUMN IF EXISTS release_date;
DO $$
DECLARE v regclass;
BEGIN
    FOR v IN SELECT c.oid::regclass FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('ivoa', 'pessto') AND c.relkind IN ('v', 'm')
    LOOP
        EXECUTE format('ALTER VIEW %s OWNER TO %I', v, current_user);
    END LOOP;
END
$$;
"""


def upgrade() -> None:
    """Hide rows from user queries in the tables themselves."""
    from vo_archive.db.migrate import mark_leakproof, own_published_views

    op.execute(UPGRADE)
    own_published_views(op.get_bind())
    mark_leakproof(op.get_bind())


def downgrade() -> None:
    """Go back to the views' own filters."""
    op.execute(DOWNGRADE)
