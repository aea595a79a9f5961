"""Spectral classifications of the 1D science spectra, queued on arrival.

Revision ID: 0010_classification
Revises: 0008_inline_did

- ``archive.classification``: one verdict of the template classifier for one
  archived file (a version): type, subtype and the share of good matches of
  that type, redshift and age with their errors, the rlap of the best match,
  whether any match was good, and the best matches (JSONB, best first). The
  classifier and template-library versions are part of the key: classifying
  again with a new classifier or library adds a row; nothing is overwritten.
- ``pessto.classifications`` and ``pessto.classification_matches``: the
  published views, with the access rule of the spectrum they classify (a
  classification is as proprietary as its spectrum).
- A trigger on ``archive.version`` queues every newly archived final 1D science
  spectrum for the job workers (procrastinate task ``classify.version``), in
  the transaction that records it: a spectrum is never archived without being
  queued.
"""

from __future__ import annotations

from alembic import op

revision = "0010_classification"
down_revision = "0008_inline_did"
branch_labels = ("classification",)
depends_on = None

UPGRADE = r"""
CREATE TABLE archive.classification (
    classification_id  bigserial PRIMARY KEY,
    version_id         bigint NOT NULL REFERENCES archive.version ON DELETE CASCADE,
    classifier_version text NOT NULL,
    library_version    text NOT NULL,
    sn_type            text,
    sn_subtype         text,
    fraction           double precision,
    redshift           double precision,
    redshift_err       double precision,
    age                double precision,
    age_err            double precision,
    rlap               double precision,
    good               boolean NOT NULL,
    problem            text,
    matches            jsonb NOT NULL DEFAULT '[]',
    classified_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (version_id, classifier_version, library_version)
);
COMMENT ON TABLE archive.classification IS
    'Verdicts of the template classifier: one per file, classifier version and '
    'template-library version (a new version adds a row)';
COMMENT ON COLUMN archive.classification.problem IS
    'Why the file could not be classified (not readable as a spectrum), or NULL';
COMMENT ON COLUMN archive.classification.matches IS
    'Best matches, best first: [{template, type, subtype, phase, z, z_err, r, lap, '
    'rlap}, ...]';

-- Which products the classifier is for: final 1D science spectra.
CREATE FUNCTION archive.classifiable(mode text, category text, level text,
                                     product_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 = 'spectroscopy' AND $2 = 'science' AND $3 = 'final'
       AND $4 IN ('fluxcal_1d', 'telluric_corrected_1d', 'extracted_1d')
$$;

-- Queue each new classifiable version for the job workers (queue "uws", as
-- vo_archive.vo.uws.worker.enqueue does for UWS jobs), below interactive jobs.
CREATE FUNCTION archive.queue_classification() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM procrastinate.procrastinate_defer_jobs_v1(array_agg(
        ROW('uws', 'classify.version', -1, NULL, NULL,
            jsonb_build_object('version_id', n.version_id), NULL)::
        procrastinate.procrastinate_job_to_defer_v1))
    FROM new_versions n JOIN archive.product p USING (product_id)
    WHERE archive.classifiable(p.mode, p.category, p.level, p.product_type)
    HAVING count(*) > 0;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER version_queue_classification
AFTER INSERT ON archive.version
REFERENCING NEW TABLE AS new_versions
FOR EACH STATEMENT EXECUTE FUNCTION archive.queue_classification();

CREATE VIEW pessto.classifications AS
SELECT c.classification_id, v.product_id, c.version_id, v.version_no,
       v.is_current, p.target_id, p.run_id,
       c.classifier_version, c.library_version,
       c.sn_type, c.sn_subtype, c.fraction, c.redshift, c.redshift_err,
       c.age, c.age_err, c.rlap, c.good, c.problem,
       c.matches -> 0 ->> 'template' AS best_template,
       jsonb_array_length(c.matches) AS n_matches,
       c.classified_at,
       NOT EXISTS (SELECT 1 FROM archive.classification l
                   WHERE l.version_id = c.version_id
                     AND l.classification_id > c.classification_id) AS is_latest,
       archive.publisher_did(v.product_id, v.version_no) AS publisher_did
FROM archive.classification c
JOIN archive.version v USING (version_id)
JOIN archive.product p USING (product_id)
WHERE archive.visible(p.release_date);

CREATE VIEW pessto.classification_matches AS
SELECT c.classification_id, m.n::integer AS rank, m.e ->> 'template' AS template,
       m.e ->> 'type' AS sn_type, m.e ->> 'subtype' AS sn_subtype,
       (m.e ->> 'phase')::double precision AS phase,
       (m.e ->> 'z')::double precision AS redshift,
       (m.e ->> 'z_err')::double precision AS redshift_err,
       (m.e ->> 'r')::double precision AS r,
       (m.e ->> 'lap')::double precision AS lap,
       (m.e ->> 'rlap')::double precision AS rlap
FROM archive.classification c
JOIN archive.version v USING (version_id)
JOIN archive.product p USING (product_id)
CROSS JOIN LATERAL jsonb_array_elements(c.matches) WITH ORDINALITY AS m(e, n)
WHERE archive.visible(p.release_date);

CREATE INDEX classification_version ON archive.classification (version_id,
                                                               classified_at);

GRANT SELECT ON pessto.classifications, pessto.classification_matches
    TO pessto_tap_reader;
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS pessto.classification_matches, pessto.classifications;
DROP TRIGGER IF EXISTS version_queue_classification ON archive.version;
DROP FUNCTION IF EXISTS archive.queue_classification();
DROP FUNCTION IF EXISTS archive.classifiable(text, text, text, text);
DROP TABLE IF EXISTS archive.classification;
"""


def upgrade() -> None:
    """Create the classification table, its published views and the arrival queue."""
    op.execute(UPGRADE)
    from tap.tap_schema import sync_tap_schema

    sync_tap_schema(op.get_bind())


def downgrade() -> None:
    """Remove classifications (they are lost) and stop queueing arrivals."""
    op.execute(DOWNGRADE)
