"""The archive's targets matched to the Marshall's transients (issue 19).

Revision ID: 0013_marshall_match
Revises: 0001_core

- ``archive.marshall_name_key(text)``: the comparison key of a transient name,
  the rules of ``vo_archive/marshall/names.py`` (tested against it);
- ``archive.marshall_index``: each Marshall transient's key and position
  (pgSphere ``spoint``, GiST), filled from ``marshall.transients`` wherever the
  Marshall lives (this database or another one);
- ``archive.marshall_match``: one row per matched target, its outcome
  (``matched`` / ``ambiguous`` / ``unmatched``), method, separation and the
  candidate transients of an ambiguous case;
- ``archive.marshall_rematch(integer[])``: matches those targets again (and
  the targets competing with them for one transient), sets
  ``archive.target.marshall_id`` for the unambiguous ones;
- ``archive.marshall_install_refresh()``: where ``marshall.transients`` is in
  this database, triggers that keep the index and the matches current on every
  change of a transient, written locally or applied by the replicator
  (``ENABLE REPLICA``: the replicator's session has
  ``session_replication_role = replica``; the replica trigger switches it back
  to ``origin`` for its own writes so that the AUX capture triggers see them).

- ``pessto.marshall_classifications``: the published, members-only view (a
  security barrier, filtered by ``archive.visible(NULL)``) of each matched
  target's latest Marshall classification, ATels, priority and status next to
  the archive's own classification, with a disagreement flag.

The Marshall's schema itself (``schema/marshall/001_marshall.sql``,
idempotent) is created in every archive database, empty where the Marshall's
backup lives in another one.  The radius is
``archive.marshall_config.radius_arcsec`` (3 by default; local to each site,
not replicated).  The refresh trigger needs, in the replicator's session, the
right to set ``session_replication_role`` (which the replicator has: it sets
it itself) and ``USAGE`` on schema ``archive``; its writes run as the
archive's owner.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0013_marshall_match"
down_revision = "0001_core"
branch_labels = ("marshall",)
# The GiST index on target positions (0002_tap); the owner of the published
# views (0009_row_security).  The archive's classifications (0010, another
# branch) are read at run time, where they exist.
depends_on = ("0002_tap", "0009_row_security")

#: The Marshall's schema (idempotent): the backup's tables exist in every
#: archive database, empty where the Marshall lives in another one, so that the
#: published view and the refresh triggers always have them.
MARSHALL_SQL = Path(__file__).resolve().parents[1] / "marshall" / "001_marshall.sql"

UPGRADE = r"""
CREATE FUNCTION archive.marshall_name_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT regexp_replace(regexp_replace(
           CASE WHEN m IS NULL THEN replace(s, '-', '')
                ELSE replace(m[1], '-', '') || m[2] END,
           '^(sn|at)(?=[0-9]{4}[a-z]+$)', ''),
       '^master(ot)?(?=j)', 'masterot')
FROM (SELECT s, regexp_match(s, '^(.*?)(j[0-9]{4}[0-9.]*[+-][0-9][0-9.]*)$') AS m
      FROM (SELECT regexp_replace(replace(lower(name), U&'\2212', '-'),
                                  '[[:space:]_]+', '', 'g') AS s) AS a) AS b
$$;

CREATE TABLE archive.marshall_index (
    transient_id bigint PRIMARY KEY,
    name         text NOT NULL,
    name_key     text NOT NULL,
    pos          spoint NOT NULL
);
CREATE INDEX marshall_index_key ON archive.marshall_index (name_key);
CREATE INDEX marshall_index_pos ON archive.marshall_index USING gist (pos);
COMMENT ON TABLE archive.marshall_index IS
    'Name key and position of each Marshall transient, for the cross-match';

CREATE TABLE archive.marshall_match (
    target_id         integer PRIMARY KEY REFERENCES archive.target ON DELETE CASCADE,
    status            text NOT NULL
                      CHECK (status IN ('matched', 'ambiguous', 'unmatched')),
    transient_id      bigint,
    method            text CHECK (method IN ('name', 'position', 'name+position')),
    separation_arcsec double precision,
    candidates        bigint[] NOT NULL DEFAULT '{}',
    reason            text,
    matched_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'matched') = (transient_id IS NOT NULL))
);
CREATE INDEX marshall_match_transient ON archive.marshall_match (transient_id);
CREATE INDEX marshall_match_candidates ON archive.marshall_match USING gin (candidates);
COMMENT ON TABLE archive.marshall_match IS
    'Cross-match of each target with the Marshall; ambiguous cases list candidates';

CREATE INDEX target_marshall_key ON archive.target (archive.marshall_name_key(name));
CREATE INDEX target_alias_marshall_key ON archive.target_alias (archive.marshall_name_key(alias));
-- (target positions: the GiST index target_radec_sphere of 0002_tap)

-- Local to each site (not in the AUX set): the radius the triggers use.
CREATE TABLE archive.marshall_config (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    radius_arcsec  double precision NOT NULL DEFAULT 3 CHECK (radius_arcsec > 0)
);
INSERT INTO archive.marshall_config DEFAULT VALUES;

CREATE FUNCTION archive.marshall_radius() RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT radians(coalesce((SELECT radius_arcsec FROM archive.marshall_config), 3)
                   / 3600)
$$;

-- Targets whose match may change when a transient with this id, key and
-- position appears, changes or goes.
CREATE FUNCTION archive.marshall_targets_of(tid bigint, key text, pos spoint)
RETURNS integer[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT target_id), '{}') FROM (
        SELECT target_id FROM archive.marshall_match
        WHERE transient_id = tid OR candidates @> ARRAY[tid]
        UNION ALL
        SELECT target_id FROM archive.target WHERE marshall_id = tid
        UNION ALL
        SELECT target_id FROM archive.target
        WHERE key IS NOT NULL AND archive.marshall_name_key(name) = key
        UNION ALL
        SELECT target_id FROM archive.target_alias
        WHERE key IS NOT NULL AND archive.marshall_name_key(alias) = key
        UNION ALL
        SELECT target_id FROM archive.target
        WHERE pos IS NOT NULL AND ra IS NOT NULL AND dec IS NOT NULL
          AND spoint(radians(ra), radians(dec)) <@ scircle(pos, archive.marshall_radius())
    ) AS a
$$;

-- ids NULL: every target.
CREATE FUNCTION archive.marshall_rematch(ids integer[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r double precision := archive.marshall_radius();
    touched bigint[];
    n integer;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS marshall_work (
        target_id integer PRIMARY KEY, by_name bigint[], by_pos bigint[],
        status text, transient_id bigint, method text, sep double precision,
        candidates bigint[], reason text
    );  -- kept for the session: its statements' plans stay cached
    DELETE FROM marshall_work;
    IF ids IS NULL THEN
        -- every target: nothing to widen
        INSERT INTO marshall_work (target_id) SELECT target_id FROM archive.target;
    ELSE
    -- The transients these targets touch, before and now; every target that
    -- touches one of them is settled together with them (one transient, one
    -- target).
    SELECT array_agg(DISTINCT x) INTO touched FROM (
        SELECT unnest(candidates || transient_id) FROM archive.marshall_match
        WHERE target_id = ANY(ids)
        UNION ALL SELECT marshall_id FROM archive.target WHERE target_id = ANY(ids)
        UNION ALL SELECT m.transient_id FROM archive.target t
            JOIN archive.marshall_index m ON m.name_key = archive.marshall_name_key(t.name)
            WHERE t.target_id = ANY(ids)
        UNION ALL SELECT m.transient_id FROM archive.target_alias a
            JOIN archive.marshall_index m ON m.name_key = archive.marshall_name_key(a.alias)
            WHERE a.target_id = ANY(ids)
        UNION ALL SELECT m.transient_id FROM archive.target t
            JOIN archive.marshall_index m
              ON m.pos <@ scircle(spoint(radians(t.ra), radians(t.dec)), r)
            WHERE t.target_id = ANY(ids) AND t.ra IS NOT NULL AND t.dec IS NOT NULL
    ) AS a(x) WHERE x IS NOT NULL;
    INSERT INTO marshall_work (target_id)
    SELECT target_id FROM archive.target WHERE target_id = ANY(ids)
    UNION SELECT target_id FROM archive.marshall_match
          WHERE transient_id = ANY(touched) OR candidates && touched
    UNION SELECT target_id FROM archive.target WHERE marshall_id = ANY(touched);
    IF touched IS NOT NULL THEN
        INSERT INTO marshall_work (target_id)
        SELECT DISTINCT x FROM (
            SELECT t.target_id FROM archive.target t
                JOIN archive.marshall_index m
                  ON m.name_key = archive.marshall_name_key(t.name)
                WHERE m.transient_id = ANY(touched)
            UNION ALL SELECT a.target_id FROM archive.target_alias a
                JOIN archive.marshall_index m
                  ON m.name_key = archive.marshall_name_key(a.alias)
                WHERE m.transient_id = ANY(touched)
            UNION ALL SELECT t.target_id FROM archive.marshall_index m
                JOIN archive.target t
                  ON spoint(radians(t.ra), radians(t.dec)) <@ scircle(m.pos, r)
                 AND t.ra IS NOT NULL AND t.dec IS NOT NULL
                WHERE m.transient_id = ANY(touched)
        ) AS a(x) ON CONFLICT DO NOTHING;
    END IF;
    END IF;

    UPDATE marshall_work w SET by_name = (
        SELECT array_agg(DISTINCT m.transient_id ORDER BY m.transient_id)
        FROM (SELECT archive.marshall_name_key(t.name) AS k FROM archive.target t
              WHERE t.target_id = w.target_id
              UNION SELECT archive.marshall_name_key(a.alias) FROM archive.target_alias a
              WHERE a.target_id = w.target_id) AS keys
        JOIN archive.marshall_index m ON m.name_key = keys.k),
    by_pos = (
        SELECT array_agg(m.transient_id ORDER BY m.pos <-> spoint(radians(t.ra), radians(t.dec)),
                         m.transient_id)
        FROM archive.target t JOIN archive.marshall_index m
          ON m.pos <@ scircle(spoint(radians(t.ra), radians(t.dec)), r)
        WHERE t.target_id = w.target_id AND t.ra IS NOT NULL AND t.dec IS NOT NULL);

    UPDATE marshall_work SET (status, transient_id, method, candidates, reason) =
        (SELECT * FROM (VALUES
            (CASE WHEN cardinality(by_name) > 1 THEN 'ambiguous'
                  WHEN cardinality(by_name) = 1 AND cardinality(by_pos) > 0
                       AND NOT by_name[1] = ANY(by_pos) THEN 'ambiguous'
                  WHEN cardinality(by_name) = 1 THEN 'matched'
                  WHEN cardinality(by_pos) > 1 THEN 'ambiguous'
                  WHEN cardinality(by_pos) = 1 THEN 'matched'
                  ELSE 'unmatched' END,
             CASE WHEN cardinality(by_name) = 1
                       AND (by_pos IS NULL OR by_name[1] = ANY(by_pos)) THEN by_name[1]
                  WHEN by_name IS NULL AND cardinality(by_pos) = 1 THEN by_pos[1] END,
             CASE WHEN cardinality(by_name) = 1 AND by_name[1] = ANY(by_pos)
                       THEN 'name+position'
                  WHEN cardinality(by_name) = 1 AND by_pos IS NULL THEN 'name'
                  WHEN by_name IS NULL AND cardinality(by_pos) = 1 THEN 'position' END,
             ARRAY(SELECT DISTINCT x FROM unnest(coalesce(by_name, '{}')
                                                || coalesce(by_pos, '{}')) AS x
                   ORDER BY x),
             CASE WHEN cardinality(by_name) > 1
                       THEN 'the name matches ' || cardinality(by_name) || ' transients'
                  WHEN cardinality(by_name) = 1 AND cardinality(by_pos) > 0
                       AND NOT by_name[1] = ANY(by_pos)
                       THEN 'name and position disagree'
                  WHEN by_name IS NULL AND cardinality(by_pos) > 1
                       THEN cardinality(by_pos) || ' transients within the radius' END)
        ) AS v);
    UPDATE marshall_work SET method = NULL WHERE status <> 'matched';

    -- One transient, one target: competing claims are all ambiguous.
    UPDATE marshall_work w SET status = 'ambiguous', method = NULL,
        reason = 'transient ' || w.transient_id || ' also matches target(s) '
                 || c.others,
        transient_id = NULL
    FROM (SELECT a.target_id, string_agg(b.target_id::text, ', ' ORDER BY b.target_id)
                 AS others
          FROM marshall_work a JOIN marshall_work b
            ON b.transient_id = a.transient_id AND b.target_id <> a.target_id
          GROUP BY a.target_id) AS c
    WHERE c.target_id = w.target_id;

    UPDATE marshall_work w SET sep = degrees(m.pos <-> spoint(radians(t.ra), radians(t.dec))) * 3600
    FROM archive.marshall_index m, archive.target t
    WHERE m.transient_id = w.transient_id AND t.target_id = w.target_id
      AND t.ra IS NOT NULL AND t.dec IS NOT NULL;

    INSERT INTO archive.marshall_match AS mm (target_id, status, transient_id, method,
        separation_arcsec, candidates, reason)
    SELECT target_id, status, transient_id, method, sep, candidates, reason
    FROM marshall_work
    ON CONFLICT (target_id) DO UPDATE SET status = excluded.status,
        transient_id = excluded.transient_id, method = excluded.method,
        separation_arcsec = excluded.separation_arcsec,
        candidates = excluded.candidates, reason = excluded.reason, matched_at = now()
    WHERE (mm.status, mm.transient_id, mm.method, mm.separation_arcsec, mm.candidates,
           mm.reason) IS DISTINCT FROM
          (excluded.status, excluded.transient_id, excluded.method,
           excluded.separation_arcsec, excluded.candidates, excluded.reason);

    UPDATE archive.target t SET marshall_id = NULL, updated_at = now()
    FROM marshall_work w
    WHERE t.target_id = w.target_id AND t.marshall_id IS DISTINCT FROM w.transient_id
      AND t.marshall_id IS NOT NULL;
    UPDATE archive.target t SET marshall_id = w.transient_id, updated_at = now()
    FROM marshall_work w
    WHERE t.target_id = w.target_id AND t.marshall_id IS DISTINCT FROM w.transient_id;
    SELECT count(*) INTO n FROM marshall_work;
    RETURN n;
END
$$;

CREATE FUNCTION archive.marshall_refresh(op text, old_id bigint, new_id bigint,
                                         new_name text, new_ra double precision,
                                         new_dec double precision)
RETURNS void LANGUAGE plpgsql
-- as the archive's owner: a least-privileged replicator applying a Marshall
-- change needs no rights on the archive's tables
SECURITY DEFINER AS $$
DECLARE
    ids integer[] := '{}';
    pos spoint;
BEGIN
    -- A read-only copy of the archive's tables (QUB's AUX copy next to its
    -- Marshall) is the replicator's to write, not this trigger's.
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'archive.target'::regclass
               AND tgname LIKE '\_repl\_deny\_%') THEN
        RETURN;
    END IF;
    IF op = 'TRUNCATE' THEN
        DELETE FROM archive.marshall_index;
        PERFORM archive.marshall_rematch(ARRAY(
            SELECT target_id FROM archive.marshall_match WHERE status <> 'unmatched'));
        RETURN;
    END IF;
    IF op IN ('UPDATE', 'DELETE') THEN
        DELETE FROM archive.marshall_index WHERE transient_id = old_id;
        ids := archive.marshall_targets_of(old_id, NULL, NULL);
    END IF;
    IF op IN ('INSERT', 'UPDATE') THEN
        pos := spoint(radians(new_ra), radians(new_dec));
        INSERT INTO archive.marshall_index
        VALUES (new_id, new_name, archive.marshall_name_key(new_name), pos);
        ids := ids || archive.marshall_targets_of(
            new_id, archive.marshall_name_key(new_name), pos);
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM archive.marshall_rematch(ids);
    END IF;
END
$$;

CREATE FUNCTION archive.marshall_transient_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM archive.marshall_refresh('TRUNCATE', NULL, NULL, NULL, NULL, NULL);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM archive.marshall_refresh(TG_OP, OLD.transient_id, NULL, NULL, NULL, NULL);
    ELSIF TG_OP = 'INSERT' OR (OLD.name, OLD.ra_deg, OLD.dec_deg, OLD.transient_id)
            IS DISTINCT FROM (NEW.name, NEW.ra_deg, NEW.dec_deg, NEW.transient_id) THEN
        PERFORM archive.marshall_refresh(TG_OP, OLD.transient_id, NEW.transient_id,
                                         NEW.name, NEW.ra_deg, NEW.dec_deg);
    END IF;
    RETURN NULL;
END
$$;

-- The same for the changes the replicator applies (its session has
-- session_replication_role = replica): the writes to the archive's own tables
-- must fire their AUX capture triggers, so this one runs as origin.
CREATE FUNCTION archive.marshall_transient_replicated() RETURNS trigger
LANGUAGE plpgsql SET session_replication_role = origin AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM archive.marshall_refresh('TRUNCATE', NULL, NULL, NULL, NULL, NULL);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM archive.marshall_refresh(TG_OP, OLD.transient_id, NULL, NULL, NULL, NULL);
    ELSIF TG_OP = 'INSERT' OR (OLD.name, OLD.ra_deg, OLD.dec_deg, OLD.transient_id)
            IS DISTINCT FROM (NEW.name, NEW.ra_deg, NEW.dec_deg, NEW.transient_id) THEN
        PERFORM archive.marshall_refresh(TG_OP, OLD.transient_id, NEW.transient_id,
                                         NEW.name, NEW.ra_deg, NEW.dec_deg);
    END IF;
    RETURN NULL;
END
$$;

-- Where the Marshall (its backup) is in this database: keep the index and the
-- matches current.  Idempotent; false when there is no marshall.transients.
CREATE FUNCTION archive.marshall_install_refresh() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('marshall.transients') IS NULL THEN
        RETURN false;
    END IF;
    CREATE OR REPLACE TRIGGER marshall_refresh
        AFTER INSERT OR UPDATE OR DELETE ON marshall.transients
        FOR EACH ROW EXECUTE FUNCTION archive.marshall_transient_changed();
    CREATE OR REPLACE TRIGGER marshall_refresh_truncate
        AFTER TRUNCATE ON marshall.transients
        FOR EACH STATEMENT EXECUTE FUNCTION archive.marshall_transient_changed();
    CREATE OR REPLACE TRIGGER marshall_refresh_replica
        AFTER INSERT OR UPDATE OR DELETE ON marshall.transients
        FOR EACH ROW EXECUTE FUNCTION archive.marshall_transient_replicated();
    CREATE OR REPLACE TRIGGER marshall_refresh_replica_truncate
        AFTER TRUNCATE ON marshall.transients
        FOR EACH STATEMENT EXECUTE FUNCTION archive.marshall_transient_replicated();
    ALTER TABLE marshall.transients ENABLE REPLICA TRIGGER marshall_refresh_replica;
    ALTER TABLE marshall.transients
        ENABLE REPLICA TRIGGER marshall_refresh_replica_truncate;
    RETURN true;
END
$$;
-- The refresh runs in other sessions (the replicator's has its own
-- search_path): these functions find pgSphere where it is installed.
DO $$
DECLARE
    s text := (SELECT extnamespace::regnamespace::text FROM pg_extension
               WHERE extname = 'pg_sphere');
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'archive.marshall_targets_of(bigint, text, spoint)',
        'archive.marshall_rematch(integer[])',
        'archive.marshall_refresh(text, bigint, bigint, text, double precision, '
            'double precision)',
        'archive.marshall_transient_changed()',
        'archive.marshall_transient_replicated()',
        'archive.marshall_install_refresh()']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog', f, s);
    END LOOP;
END
$$;

SELECT archive.marshall_install_refresh();

-- Type names compared without spaces, hyphens and the SN prefix; a type
-- agrees with its subtypes (SN IIP with II, SN Ia-91T with Ia).
CREATE FUNCTION archive.sn_types_agree(a text, b text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT starts_with(x, y) OR starts_with(y, x)
    FROM (SELECT regexp_replace(regexp_replace(lower(a), '[[:space:]_-]+', '', 'g'),
                                '^sn', '') AS x,
                 regexp_replace(regexp_replace(lower(b), '[[:space:]_-]+', '', 'g'),
                                '^sn', '') AS y) AS k
$$;

-- The archive's latest good classification of a target's spectra
-- (archive.classification of 0010_classification, when that is installed:
-- PL/pgSQL resolves the table at run time).  As owner, like the view's own
-- reads: the TAP reader role has no rights on archive tables.
CREATE FUNCTION archive.target_classification(tid integer,
    OUT sn_type text, OUT redshift double precision, OUT classified_at timestamptz)
RETURNS SETOF record LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('archive.classification') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT k.sn_type, k.redshift, k.classified_at
    FROM archive.classification k
    JOIN archive.version v USING (version_id)
    JOIN archive.product p USING (product_id)
    WHERE p.target_id = tid AND k.good AND k.sn_type IS NOT NULL
    ORDER BY k.classified_at DESC, k.classification_id DESC LIMIT 1;
END
$$;

-- The Marshall's view of each matched target, next to the archive's own
-- classification.  The survey's private data: members only
-- (archive.visible(NULL) holds only in a transaction opened for a caller who
-- sees proprietary data).
-- A security barrier: the view's own condition is evaluated before any
-- condition of the caller's query (an ADQL WHERE that raises on a hidden
-- row's value would otherwise tell an anonymous caller what it holds).  The
-- view's owner (pessto_published, given back by `db init`) reads the backup.
GRANT USAGE ON SCHEMA marshall TO pessto_published;
GRANT SELECT ON marshall.transients, marshall.classifications,
    marshall.priorities, marshall.atel_refs TO pessto_published;
CREATE VIEW pessto.marshall_classifications WITH (security_barrier) AS
SELECT t.target_id, m.transient_id AS marshall_id, m.name AS marshall_name,
       m.status, pr.priority, c.sn_type, c.redshift, c.phase_days,
       c.classified_by, c.classified_at,
       (SELECT count(*) FROM marshall.classifications x
        WHERE x.transient_id = m.transient_id)::integer AS n_classifications,
       (SELECT string_agg('ATel #' || a.atel_number, ', ' ORDER BY a.atel_number)
        FROM marshall.atel_refs a WHERE a.transient_id = m.transient_id) AS atels,
       coalesce(ac.sn_type, t.classification) AS archive_type,
       ac.redshift AS archive_redshift,
       ac.classified_at AS archive_classified_at,
       NOT archive.sn_types_agree(c.sn_type, coalesce(ac.sn_type, t.classification))
           AS types_disagree
FROM archive.target t
JOIN marshall.transients m ON m.transient_id = t.marshall_id
LEFT JOIN marshall.priorities pr ON pr.transient_id = m.transient_id
LEFT JOIN LATERAL (
    SELECT x.sn_type, x.redshift, x.phase_days, x.classified_by, x.classified_at
    FROM marshall.classifications x WHERE x.transient_id = m.transient_id
    ORDER BY x.classified_at DESC, x.classification_id DESC LIMIT 1) AS c ON true
LEFT JOIN LATERAL archive.target_classification(t.target_id) AS ac ON true
WHERE archive.visible(NULL);
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS pessto.marshall_classifications;
REVOKE ALL ON ALL TABLES IN SCHEMA marshall FROM pessto_published;
REVOKE USAGE ON SCHEMA marshall FROM pessto_published;
DROP FUNCTION IF EXISTS archive.sn_types_agree(text, text),
    archive.target_classification(integer);
DO $$ BEGIN
    IF to_regclass('marshall.transients') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS marshall_refresh ON marshall.transients;
        DROP TRIGGER IF EXISTS marshall_refresh_truncate ON marshall.transients;
        DROP TRIGGER IF EXISTS marshall_refresh_replica ON marshall.transients;
        DROP TRIGGER IF EXISTS marshall_refresh_replica_truncate ON marshall.transients;
    END IF;
END $$;
DROP FUNCTION IF EXISTS archive.marshall_install_refresh(),
    archive.marshall_transient_replicated(), archive.marshall_transient_changed(),
    archive.marshall_refresh(text, bigint, bigint, text, double precision,
                             double precision),
    archive.marshall_rematch(integer[]),
    archive.marshall_targets_of(bigint, text, spoint), archive.marshall_radius();
DROP INDEX IF EXISTS archive.target_alias_marshall_key, archive.target_marshall_key;
DROP TABLE IF EXISTS archive.marshall_match, archive.marshall_index,
    archive.marshall_config;
DROP FUNCTION IF EXISTS archive.marshall_name_key(text);
"""


def upgrade() -> None:
    """Create the cross-match tables, functions, refresh triggers and view."""
    op.execute(MARSHALL_SQL.read_text())
    op.execute(UPGRADE)


def downgrade() -> None:
    """Remove the cross-match (target.marshall_id values stay)."""
    op.execute(DOWNGRADE)
