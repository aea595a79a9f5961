-- Replication support objects, applied by `vo-archive replicate init` to every
-- database that takes part in a stream (master or slave).  Idempotent.
--
-- Capture: replication.capture() is a row trigger (and a statement trigger for
-- TRUNCATE) that queues one PgQ event per change, in the writer's transaction:
--   ev_type   I / U / D / R (R = truncate)
--   ev_data   the new row as JSON (I, U), the key as JSON (D), NULL (R)
--   ev_extra1 the table, schema-qualified and quoted
--   ev_extra2 the old key as JSON (U, D); an UPDATE may change the key
--   ev_extra3 the origin site
-- PgQ's own C triggers (logutriga, jsontriga, sqltriga) refuse primary-key
-- updates ("primary key update not allowed"), which issue 6 requires, so the
-- capture trigger is ours; the queue, ticks and batches are PgQ's.

CREATE EXTENSION IF NOT EXISTS pgq;
CREATE SCHEMA IF NOT EXISTS replication;

-- Master side --------------------------------------------------------------

CREATE OR REPLACE FUNCTION replication.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- TG_ARGV: queue name, origin site, key columns ({a,b}).
DECLARE
    tbl  text := quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME);
    keys text[];
    oldrow jsonb;
    oldkey text;
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
    IF TG_OP = 'INSERT' THEN
        PERFORM pgq.insert_event(TG_ARGV[0], 'I', to_jsonb(NEW)::text, tbl, NULL,
                                 TG_ARGV[1], NULL);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgq.insert_event(TG_ARGV[0], 'U', to_jsonb(NEW)::text, tbl, oldkey,
                                 TG_ARGV[1], NULL);
    ELSE
        PERFORM pgq.insert_event(TG_ARGV[0], 'D', oldkey, tbl, oldkey, TG_ARGV[1], NULL);
    END IF;
    RETURN NULL;
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
    events_applied  bigint NOT NULL DEFAULT 0,
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

-- Apply one chunk of a batch, in event order.  Runs inside the replicator's
-- batch transaction under session_replication_role = replica.  Any failure is
-- re-raised with the event id, table and key in its message (anchors P7).
CREATE OR REPLACE FUNCTION replication.apply_events(
    p_ids bigint[], p_types text[], p_tables text[], p_data text[], p_keys text[]
) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i       integer := 0;
    n       integer := coalesce(array_length(p_ids, 1), 0);
    rel     regclass;
    sql     text;
    cache   jsonb := '{}';
    cols    text;
    keycols text;
    rc      bigint;
    msg     text;
    det     text;
    state   text;
BEGIN
    BEGIN
        FOR j IN 1 .. n LOOP
            i := j;
            rel := p_tables[j]::regclass;
            IF NOT cache ? p_tables[j] THEN
                SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
                  INTO cols
                  FROM pg_attribute a
                 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = '';
                SELECT string_agg(quote_ident(a.attname), ',' ORDER BY k.ord)
                  INTO keycols
                  FROM pg_index x
                  CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                 WHERE x.indrelid = rel AND x.indisprimary;
                IF keycols IS NULL THEN
                    RAISE EXCEPTION 'table % has no primary key', rel;
                END IF;
                cache := cache || jsonb_build_object(p_tables[j],
                                                     jsonb_build_array(cols, keycols));
            END IF;
            cols := cache -> p_tables[j] ->> 0;
            keycols := cache -> p_tables[j] ->> 1;
            CASE p_types[j]
            WHEN 'I' THEN
                EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, $1)',
                               rel, cols, cols, rel) USING p_data[j]::jsonb;
            WHEN 'U' THEN
                EXECUTE format('UPDATE %s SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1)) '
                               'WHERE (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $2))',
                               rel, cols, cols, rel, keycols, keycols, rel)
                        USING p_data[j]::jsonb, p_keys[j]::jsonb;
                GET DIAGNOSTICS rc = ROW_COUNT;
                IF rc <> 1 THEN
                    RAISE EXCEPTION 'UPDATE found % rows for the key', rc
                          USING ERRCODE = 'no_data_found';
                END IF;
            WHEN 'D' THEN
                EXECUTE format('DELETE FROM %s WHERE (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1))',
                               rel, keycols, keycols, rel) USING p_keys[j]::jsonb;
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
              p_tables[i], coalesce(p_keys[i], p_data[i]), msg
              USING ERRCODE = state, DETAIL = coalesce(det, '');
    END;
    RETURN n;
END;
$$;
