-- Replication support objects, applied by `vo-archive replicate init` to every
-- database that takes part in a stream (master or slave).  Idempotent.
--
-- Capture: a row trigger per table (made by `init`, see below) and a statement
-- trigger for TRUNCATE queue one PgQ event per change, in the writer's
-- transaction:
--   ev_type   I / U / D / R (R = truncate)
--   ev_data   the new row image (I, U), the key (D), NULL (R): JSON objects
--   ev_extra1 the table, schema-qualified and quoted
--   ev_extra2 the old key as JSON (U, D); an UPDATE may change the key
--   ev_extra3 the origin site
--   ev_extra4 the image format: 't' (each column's text form, see below), or
--             NULL for the legacy to_jsonb images of version 1
-- PgQ's own C triggers (logutriga, jsontriga, sqltriga) refuse primary-key
-- updates ("primary key update not allowed"), which issue 6 requires, so the
-- capture trigger is ours; the queue, ticks and batches are PgQ's.

CREATE EXTENSION IF NOT EXISTS pgq;
CREATE SCHEMA IF NOT EXISTS replication;

-- Master side --------------------------------------------------------------

-- Row images (format "t", anchors P12): a JSON object with, for every stored
-- column, its text output as a JSON string (or null), built by the expression
-- replication.row_encoder makes for the table.  PostgreSQL's text I/O is exact
-- for every type the archive replicates: floats print their shortest exact
-- digits (negative zero, NaN, Infinity, subnormals included) with
-- extra_float_digits >= 1, numeric keeps its scale, timestamps keep their
-- microseconds and infinities, json keeps its text, bytea its bytes.  JSON
-- numbers would not do: they have no negative zero.  pgSphere columns, whose
-- text has only 15 digits, carry an exact encoding.
--
-- `init` writes one capture function per table (replication.capture_<stream>_
-- <hash>, install.py), with the encoder in its body so that PL/pgSQL plans it
-- once per session, and settings that pin every text form whatever the
-- writer's session says; its events have ev_extra4 = 't'.
--
-- replication.capture() below is the TRUNCATE trigger, and the row trigger of
-- version 1 (TG_ARGV: queue, origin, key columns, [pgSphere encoder]), which
-- queued legacy images (to_jsonb of the row, ev_extra4 NULL).  It stays so that
-- a trigger of an older `init` keeps working until `init` replaces it; the
-- applier reads both formats, so a queue may hold both across an upgrade.
CREATE OR REPLACE FUNCTION replication.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET extra_float_digits = 3
SET IntervalStyle = postgres AS $$
DECLARE
    tbl  text := quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME);
    keys text[];
    oldrow jsonb;
    oldkey text;
    newrow jsonb;
    exact jsonb;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pgq.insert_event(TG_ARGV[0], 'R', NULL, tbl, NULL, TG_ARGV[1], NULL);
        RETURN NULL;
    END IF;
    keys := TG_ARGV[2]::text[];
    IF TG_OP <> 'INSERT' THEN
        oldrow := to_jsonb(OLD);
        SELECT jsonb_object_agg(k, oldrow -> k)::text INTO oldkey FROM unnest(keys) AS k;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        newrow := to_jsonb(NEW);
        IF TG_NARGS > 3 THEN
            EXECUTE 'SELECT ' || TG_ARGV[3] INTO exact USING NEW;
            newrow := newrow || exact;
        END IF;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM pgq.insert_event(TG_ARGV[0], 'I', newrow::text, tbl, NULL,
                                 TG_ARGV[1], NULL);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgq.insert_event(TG_ARGV[0], 'U', newrow::text, tbl, oldkey,
                                 TG_ARGV[1], NULL);
    ELSE
        PERFORM pgq.insert_event(TG_ARGV[0], 'D', oldkey, tbl, oldkey, TG_ARGV[1], NULL);
    END IF;
    RETURN NULL;
END;
$$;

-- The version of these support objects; the replicator refuses older ones
-- (run `replicate init` after upgrading).  2: row images in format "t".
CREATE OR REPLACE FUNCTION replication.support_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 2';

-- Exact row images (anchors P12) -------------------------------------------
-- pgSphere prints its types with at most 15 significant digits (its output
-- precision cannot be raised further), so their text form does not
-- round-trip: a copy through text differs in the last bits, and a checksum of
-- the text would not see it.  Such columns travel in an exact encoding
-- instead, their float8 components as text (shortest exact digits, so a
-- negative zero or NaN survives):
--   spoint                  {"rad": [long, lat]}
--   scircle                 {"circle": [long, lat, radius]} (centre, radius)
--   sbox                    {"box": [long, lat, long, lat]} (sw, ne corners)
--   varlena pgSphere types  {"b64": base64 of the stored bytes}, read and
--                           written through binary-coercible casts to and from
--                           bytea (replication.ensure_byte_casts); both sites
--                           must share the byte order (x86-64 / ARM64 LE).
-- Other pgSphere types (sline, sellipse, strans), arrays of pgSphere types,
-- and pgSphere key columns are refused.

CREATE OR REPLACE FUNCTION replication.exact_columns(rel regclass)
RETURNS TABLE (col name, typ text, codec text, is_key boolean)
LANGUAGE sql STABLE AS $$
    SELECT a.attname,
           format('%I.%I', n.nspname, b.typname),
           CASE WHEN t.typcategory = 'A' THEN 'unsupported'
                WHEN b.typname IN ('spoint', 'scircle', 'sbox') THEN b.typname::text
                WHEN b.typlen = -1 THEN 'bytes'
                ELSE 'unsupported' END,
           EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = rel AND x.indisprimary
                   AND a.attnum = ANY (x.indkey))
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    -- the base type of a domain, the element type of an array
    JOIN pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem
                                   WHEN t.typtype = 'd' THEN t.typbasetype
                                   ELSE t.oid END
    JOIN pg_namespace n ON n.oid = b.typnamespace
    JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = b.oid
                    AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_sphere'
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = ''
    ORDER BY a.attnum
$$;

-- Raise unless every exact column of rel has a codec.
CREATE OR REPLACE FUNCTION replication.check_exact(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM replication.exact_columns(rel) LOOP
        IF r.codec = 'unsupported' THEN
            RAISE EXCEPTION 'table %: column % (%) has no exact encoding; only spoint, '
                            'scircle, sbox and variable-length pgSphere types (spoly, '
                            'spath, smoc) replicate', rel, r.col, r.typ;
        ELSIF r.is_key THEN
            RAISE EXCEPTION 'table %: key column % is a pgSphere type', rel, r.col;
        END IF;
    END LOOP;
END;
$$;

-- Create the bytea casts the "bytes" codec needs (superuser; idempotent).
CREATE OR REPLACE FUNCTION replication.ensure_byte_casts(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM replication.check_exact(rel);
    FOR r IN SELECT DISTINCT typ FROM replication.exact_columns(rel)
             WHERE codec = 'bytes' LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = r.typ::regtype
                       AND casttarget = 'bytea'::regtype) THEN
            EXECUTE format('CREATE CAST (%s AS bytea) WITHOUT FUNCTION', r.typ);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = 'bytea'::regtype
                       AND casttarget = r.typ::regtype) THEN
            EXECUTE format('CREATE CAST (bytea AS %s) WITHOUT FUNCTION', r.typ);
        END IF;
    END LOOP;
END;
$$;

-- Expression of the image of every stored column of rel's row `rowref`, in
-- column order: its text output, or its exact encoding (exact = true).
CREATE OR REPLACE FUNCTION replication.column_encoders(rel regclass, rowref text)
RETURNS TABLE (col name, expr text, exact boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a record;
    v text;
    ns text;
BEGIN
    PERFORM replication.check_exact(rel);
    FOR a IN SELECT att.attname, ex.typ, ex.codec
             FROM pg_attribute att
             LEFT JOIN replication.exact_columns(rel) ex ON ex.col = att.attname
             WHERE att.attrelid = rel AND att.attnum > 0 AND NOT att.attisdropped
               AND att.attgenerated = ''
             ORDER BY att.attnum LOOP
        v := format('(%s).%I', rowref, a.attname);
        ns := split_part(a.typ, '.', 1);
        col := a.attname;
        exact := a.codec IS NOT NULL;
        expr := CASE a.codec
            WHEN 'spoint' THEN format(
                'jsonb_build_object(''rad'', jsonb_build_array(%1$s.long(%2$s)::text, '
                '%1$s.lat(%2$s)::text))', ns, v)
            WHEN 'scircle' THEN format(
                'jsonb_build_object(''circle'', jsonb_build_array('
                '%1$s.long(%1$s.center(%2$s))::text, %1$s.lat(%1$s.center(%2$s))::text, '
                '%1$s.radius(%2$s)::text))', ns, v)
            WHEN 'sbox' THEN format(
                'jsonb_build_object(''box'', jsonb_build_array('
                '%1$s.long(%1$s.sw(%2$s))::text, %1$s.lat(%1$s.sw(%2$s))::text, '
                '%1$s.long(%1$s.ne(%2$s))::text, %1$s.lat(%1$s.ne(%2$s))::text))', ns, v)
            WHEN 'bytes' THEN format(
                'jsonb_build_object(''b64'', encode((%s)::bytea, ''base64''))', v)
            ELSE format('(%s)::text', v) END;
        IF exact THEN
            expr := format('CASE WHEN %s IS NOT NULL THEN %s END', v, expr);
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- A jsonb object expression over (name, expression) pairs; jsonb_build_object
-- takes at most 100 arguments, so wide tables get several, joined by ||.
CREATE OR REPLACE FUNCTION replication.object_expr(names text[], exprs text[])
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg('jsonb_build_object(' || part || ')', ' || ' ORDER BY grp)
    FROM (SELECT (i - 1) / 50 AS grp,
                 string_agg(format('%L, %s', names[i], exprs[i]), ', ' ORDER BY i) AS part
          FROM generate_subscripts(names, 1) AS i GROUP BY 1) g
$$;

-- SQL expression building the exact encodings of rel's row `rowref` as a
-- jsonb object (NULL when rel has no such column).  verify hashes it beside
-- the row text.
CREATE OR REPLACE FUNCTION replication.exact_encoder(rel regclass, rowref text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT replication.object_expr(array_agg(col::text), array_agg(expr))
    FROM replication.column_encoders(rel, rowref) WHERE exact
$$;

-- SQL expression building rel's row image (format "t") of the row `rowref`.
-- The capture functions use it with rowref 'NEW'; the copy with the table alias.
CREATE OR REPLACE FUNCTION replication.row_encoder(rel regclass, rowref text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT replication.object_expr(array_agg(col::text), array_agg(expr))
    FROM replication.column_encoders(rel, rowref)
$$;

-- The exact value of column col in row image j: NULL for a JSON null, the
-- payload under tag, or an error (never a silent NULL) for anything else.
CREATE OR REPLACE FUNCTION replication.exact_value(j jsonb, col text, tag text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT j ? col THEN
        RAISE EXCEPTION 'column % is missing from the row image', col;
    ELSIF jsonb_typeof(j -> col) = 'null' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(j -> col) = 'object' AND (j -> col) ? tag THEN
        RETURN j -> col -> tag;
    END IF;
    RAISE EXCEPTION 'column %: % is not an exact "%" value (capture trigger older '
                    'than the column? re-run `replicate init`)', col, j -> col, tag;
END;
$$;

-- How to turn a row image `j` back into rel's columns:
--   cols   the stored columns, quoted, in order
--   exprs  one expression per column for a legacy image (to_jsonb), over the
--          image `j` and the record `r` = jsonb_populate_record(NULL::rel, j - exact)
--   exact  the exactly-encoded columns (left out of r)
--   texts  one expression per column for a format "t" image, over `j` alone:
--          the column's text form cast to its type (the type's input function)
-- The float8 components of exact encodings are read with ::float8, so both a
-- JSON number (legacy) and a JSON string (format "t") are read exactly.
DO $$
BEGIN
    -- Version 1 had no `texts`; a function's OUT columns cannot be replaced.
    IF EXISTS (SELECT 1 FROM pg_proc
               WHERE oid = to_regprocedure('replication.row_decoder(regclass)')
                 AND NOT 'texts' = ANY (proargnames)) THEN
        DROP FUNCTION replication.row_decoder(regclass);
    END IF;
END;
$$;
CREATE OR REPLACE FUNCTION replication.row_decoder(rel regclass, OUT cols text,
                                                   OUT exprs text, OUT exact text[],
                                                   OUT texts text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a record;
    e text;
    ns text;
    c text[] := '{}';
    x text[] := '{}';
    t text[] := '{}';
BEGIN
    PERFORM replication.check_exact(rel);
    exact := '{}';
    FOR a IN SELECT att.attname, format_type(att.atttypid, att.atttypmod) AS ftype,
                    ex.typ, ex.codec
             FROM pg_attribute att
             LEFT JOIN replication.exact_columns(rel) ex ON ex.col = att.attname
             WHERE att.attrelid = rel AND att.attnum > 0 AND NOT att.attisdropped
               AND att.attgenerated = ''
             ORDER BY att.attnum LOOP
        c := c || quote_ident(a.attname);
        ns := split_part(a.typ, '.', 1);
        IF a.codec IS NOT NULL THEN
            e := format('replication.exact_value(j, %L, %L)', a.attname,
                        CASE a.codec WHEN 'spoint' THEN 'rad' WHEN 'scircle' THEN 'circle'
                                     WHEN 'sbox' THEN 'box' ELSE 'b64' END);
            e := CASE a.codec
                WHEN 'spoint' THEN format(
                    '%1$s.spoint((%2$s ->> 0)::float8, (%2$s ->> 1)::float8)', ns, e)
                WHEN 'scircle' THEN format(
                    '(SELECT %1$s.scircle(%1$s.spoint((v ->> 0)::float8, '
                    '(v ->> 1)::float8), (v ->> 2)::float8) FROM (SELECT %2$s AS v) q '
                    'WHERE v IS NOT NULL)', ns, e)
                WHEN 'sbox' THEN format(
                    '(SELECT %1$s.sbox(%1$s.spoint((v ->> 0)::float8, (v ->> 1)::float8), '
                    '%1$s.spoint((v ->> 2)::float8, (v ->> 3)::float8)) '
                    'FROM (SELECT %2$s AS v) q WHERE v IS NOT NULL)', ns, e)
                ELSE format('decode(%s #>> ''{}'', ''base64'')::%s', e, a.typ) END;
            x := x || e;
            t := t || e;
            exact := exact || a.attname::text;
        ELSE
            x := x || ('r.' || quote_ident(a.attname));
            t := t || format('(j ->> %L)::%s', a.attname, a.ftype);
        END IF;
    END LOOP;
    cols := array_to_string(c, ',');
    exprs := array_to_string(x, ',');
    texts := array_to_string(t, ',');
END;
$$;

-- Slave side ---------------------------------------------------------------

-- Refuses local writes to a replicated table.  Ordinary triggers do not fire
-- under session_replication_role = replica, which the replicator uses, so the
-- replicator passes and everyone else is refused (anchors P8).
CREATE OR REPLACE FUNCTION replication.deny() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table %.% is a replica (stream %, master %); local changes are refused',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1]
        USING ERRCODE = 'read_only_sql_transaction';
END;
$$;

CREATE TABLE IF NOT EXISTS replication.stream_state (
    stream          text PRIMARY KEY,
    master_id       text NOT NULL,          -- system identifier/queue id of the master
    generation      integer NOT NULL DEFAULT 1,  -- bumped by restore
    last_tick       bigint NOT NULL,        -- last master tick whose batch is applied
    last_batch      bigint,
    last_tick_time  timestamptz,            -- master time of that tick
    last_xmax       bigint,                 -- xmax of that tick's snapshot (P11)
    applied_at      timestamptz,
    events_applied  bigint NOT NULL DEFAULT 0,  -- in this generation
    last_error      text,
    error_at        timestamptz
);

CREATE TABLE IF NOT EXISTS replication.table_state (
    stream          text NOT NULL REFERENCES replication.stream_state ON DELETE CASCADE,
    table_name      text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'ok')),
    copy_snapshot   text,        -- master snapshot of the initial copy (txid_snapshot)
    copied_at       timestamptz,
    rows_copied     bigint,
    PRIMARY KEY (stream, table_name)
);

-- Applied-events journal, written only when the stream's `journal` option is
-- on (tests): a duplicate apply of an event violates the primary key (I2).
CREATE TABLE IF NOT EXISTS replication.journal (
    stream      text NOT NULL,
    generation  integer NOT NULL,
    ev_id       bigint NOT NULL,
    tick_id     bigint NOT NULL,
    PRIMARY KEY (stream, generation, ev_id)
);

-- Events an operator skipped (`replicate skip`), written in the same slave
-- transaction that moves the marker past their batch (anchors P7, T8): the
-- change is not applied, but never lost from view; `verify` lists these rows.
CREATE TABLE IF NOT EXISTS replication.dead_letter (
    stream      text NOT NULL,
    generation  integer NOT NULL,
    ev_id       bigint NOT NULL,
    batch_id    bigint NOT NULL,
    tick_id     bigint NOT NULL,            -- the batch's tick (the marker it set)
    ev_type     text NOT NULL,              -- I / U / D / R
    table_name  text NOT NULL,
    row_key     jsonb,                      -- primary key (NULL for R)
    row_data    jsonb,                      -- the row image that was not applied
    error       text,                       -- the stream's error when skipped
    skipped_by  text NOT NULL,
    skipped_at  timestamptz NOT NULL DEFAULT now(),
    reason      text,
    PRIMARY KEY (stream, generation, ev_id)
);

-- The primary key of table tab (quoted schema.table) in row image data, its
-- values typed as the columns are (a format "t" image holds their text), so
-- that it reads as the keys of U/D events and of verify do: {"id": 2}.
CREATE OR REPLACE FUNCTION replication.row_key(tab text, data jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    k jsonb;
    typed jsonb;
BEGIN
    SELECT jsonb_object_agg(a.attname, data -> a.attname::text) INTO k
    FROM pg_index x
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
    WHERE x.indrelid = to_regclass(tab) AND x.indisprimary;
    IF k IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE format('SELECT to_jsonb(r) FROM jsonb_populate_record(NULL::%s, $1) r',
                       to_regclass(tab)) INTO typed USING k;
    EXCEPTION WHEN OTHERS THEN
        RETURN k;  -- a value its column refuses: show it as it came
    END;
    RETURN (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(typed) e
            WHERE k ? e.key);
END;
$$;

-- Apply one chunk of a batch, in event order.  Runs inside the replicator's
-- batch transaction under session_replication_role = replica.  Any failure is
-- re-raised with the event id, table and key in its message (anchors P7).
-- p_formats holds each event's ev_extra4: 't' for a format "t" row image, NULL
-- for a legacy (to_jsonb) one; a queue may hold both across an upgrade.  Keys
-- are read with jsonb_populate_record, which takes numbers and text alike.
-- (Version 1 took no p_formats: dropped, so that a replicator older than these
-- functions halts instead of reading format "t" images as legacy ones.)
DROP FUNCTION IF EXISTS replication.apply_events(bigint[], text[], text[], text[], text[]);
CREATE OR REPLACE FUNCTION replication.apply_events(
    p_ids bigint[], p_types text[], p_tables text[], p_data text[], p_keys text[],
    p_formats text[]
) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i       integer := 0;
    n       integer := coalesce(array_length(p_ids, 1), 0);
    rel     regclass;
    cache   jsonb := '{}';
    curtab  text;
    cols    text;
    exprs   text;
    texts   text;
    exact   text[];
    keycols text;
    src     text;
    tsrc    text;
    ins     text;
    upd     text;
    del     text;
    tins    text;
    tupd    text;
    rc      bigint;
    msg     text;
    det     text;
    state   text;
    legacy  boolean;
BEGIN
    BEGIN
        FOR j IN 1 .. n LOOP
            i := j;
            IF p_tables[j] IS DISTINCT FROM curtab THEN
                -- Statements per table, built once per call (the events of a
                -- batch mostly come in runs of one table).
                curtab := p_tables[j];
                rel := p_tables[j]::regclass;
                IF NOT cache ? p_tables[j] THEN
                    SELECT d.cols, d.exprs, d.exact, d.texts INTO cols, exprs, exact, texts
                      FROM replication.row_decoder(rel) d;
                    SELECT string_agg(quote_ident(a.attname), ',' ORDER BY k.ord)
                      INTO keycols
                      FROM pg_index x
                      CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                     WHERE x.indrelid = rel AND x.indisprimary;
                    IF keycols IS NULL THEN
                        RAISE EXCEPTION 'table % has no primary key', rel;
                    END IF;
                    -- A legacy image as record r (and as j for exact columns).
                    src := CASE WHEN cardinality(exact) = 0
                                THEN format('jsonb_populate_record(NULL::%s, $1 - $3) r', rel)
                                ELSE format('(SELECT $1 AS j) s CROSS JOIN LATERAL '
                                            'jsonb_populate_record(NULL::%s, j - $3) r', rel)
                           END;
                    tsrc := '(SELECT $1 AS j) s';
                    cache := cache || jsonb_build_object(p_tables[j], jsonb_build_array(
                        format('INSERT INTO %s (%s) SELECT %s FROM %s', rel, cols, exprs, src),
                        format('UPDATE %s SET (%s) = (SELECT %s FROM %s) WHERE (%s) = '
                               '(SELECT %s FROM jsonb_populate_record(NULL::%s, $2))',
                               rel, cols, exprs, src, keycols, keycols, rel),
                        format('DELETE FROM %s WHERE (%s) = (SELECT %s FROM '
                               'jsonb_populate_record(NULL::%s, $2))',
                               rel, keycols, keycols, rel),
                        to_jsonb(exact),
                        format('INSERT INTO %s (%s) SELECT %s FROM %s', rel, cols, texts,
                               tsrc),
                        format('UPDATE %s SET (%s) = (SELECT %s FROM %s) WHERE (%s) = '
                               '(SELECT %s FROM jsonb_populate_record(NULL::%s, $2))',
                               rel, cols, texts, tsrc, keycols, keycols, rel)));
                END IF;
                ins := cache -> p_tables[j] ->> 0;
                upd := cache -> p_tables[j] ->> 1;
                del := cache -> p_tables[j] ->> 2;
                exact := ARRAY(SELECT jsonb_array_elements_text(cache -> p_tables[j] -> 3));
                tins := cache -> p_tables[j] ->> 4;
                tupd := cache -> p_tables[j] ->> 5;
            END IF;
            legacy := p_formats[j] IS NULL;
            IF NOT legacy AND p_formats[j] <> 't' THEN
                RAISE EXCEPTION 'unknown row image format % (replicator or support '
                                'functions older than the master''s capture trigger?)',
                                p_formats[j];
            END IF;
            -- Every statement takes (row image, old key, exact columns).
            CASE p_types[j]
            WHEN 'I' THEN
                EXECUTE CASE WHEN legacy THEN ins ELSE tins END
                    USING p_data[j]::jsonb, NULL::jsonb, exact;
            WHEN 'U' THEN
                EXECUTE CASE WHEN legacy THEN upd ELSE tupd END
                    USING p_data[j]::jsonb, p_keys[j]::jsonb, exact;
                GET DIAGNOSTICS rc = ROW_COUNT;
                IF rc <> 1 THEN
                    RAISE EXCEPTION 'UPDATE found % rows for the key', rc
                          USING ERRCODE = 'no_data_found';
                END IF;
            WHEN 'D' THEN
                EXECUTE del USING NULL::jsonb, p_keys[j]::jsonb, exact;
                GET DIAGNOSTICS rc = ROW_COUNT;
                IF rc <> 1 THEN
                    RAISE EXCEPTION 'DELETE found % rows for the key', rc
                          USING ERRCODE = 'no_data_found';
                END IF;
            WHEN 'R' THEN
                -- DELETE, not TRUNCATE: TRUNCATE refuses a table that another
                -- replicated table references, and under the replica role the
                -- foreign keys are not checked anyway.
                EXECUTE format('DELETE FROM %s', rel);
            ELSE
                RAISE EXCEPTION 'unknown event type %', p_types[j];
            END CASE;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                state = RETURNED_SQLSTATE;
        RAISE EXCEPTION 'event % (%) on table %, key %: %', p_ids[i], p_types[i],
              p_tables[i], coalesce(p_keys[i], replication.row_key(p_tables[i],
              p_data[i]::jsonb)::text, p_data[i]), msg
              USING ERRCODE = state, DETAIL = coalesce(det, '');
    END;
    RETURN n;
END;
$$;
