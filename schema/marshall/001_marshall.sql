-- The PESSTO Marshall: the survey's target-management database (QUB master,
-- backed up at IA2 by replication, issue 6).  Every table has a primary key,
-- which the replication needs to address rows.  Idempotent.

CREATE SCHEMA IF NOT EXISTS marshall;

CREATE TABLE IF NOT EXISTS marshall.transients (
    transient_id    bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,          -- e.g. SN 2018abc, ATLAS18xyz
    ra_deg          double precision NOT NULL CHECK (ra_deg >= 0 AND ra_deg < 360),
    dec_deg         double precision NOT NULL CHECK (dec_deg BETWEEN -90 AND 90),
    discovery_mag   real,
    discovery_date  timestamptz,
    survey          text,                          -- discovering survey
    status          text NOT NULL DEFAULT 'inbox'
                    CHECK (status IN ('inbox', 'review', 'classified', 'followup',
                                      'archived')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marshall.classifications (
    classification_id bigserial PRIMARY KEY,
    transient_id    bigint NOT NULL REFERENCES marshall.transients ON DELETE CASCADE,
    sn_type         text NOT NULL,                 -- e.g. SN Ia, SN IIP, TDE
    redshift        double precision,
    phase_days      real,
    classified_by   text NOT NULL,
    classified_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marshall.priorities (
    transient_id    bigint PRIMARY KEY REFERENCES marshall.transients ON DELETE CASCADE,
    priority        smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    set_by          text NOT NULL,
    set_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marshall.comments (
    comment_id      bigserial PRIMARY KEY,
    transient_id    bigint NOT NULL REFERENCES marshall.transients ON DELETE CASCADE,
    author          text NOT NULL,
    body            text NOT NULL,
    posted_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marshall.atel_refs (
    atel_number     integer NOT NULL,
    transient_id    bigint NOT NULL REFERENCES marshall.transients ON DELETE CASCADE,
    title           text,
    published_at    date,
    PRIMARY KEY (atel_number, transient_id)
);
