"""Publisher DIDs written without a query per row.

Revision ID: 0008_inline_did
Revises: 0002_tap

``archive.publisher_did(product_id, version_no)`` read the publisher authority
from ``archive_meta.setting`` with a subquery, as a SECURITY DEFINER function:
PostgreSQL cannot inline such a function, so every row of every view that shows
a DID (``pessto.products``, ``ivoa.obscore``) ran a function call and an index
scan (about 15 µs a row: a third of a cone search's time in the database). The
function now holds the authority as a constant and is inlined into the views
(STABLE, as ``text || bigint`` is: an IMMUTABLE body would not be inlined);
a trigger on ``archive_meta.setting`` writes it again whenever the authority
changes (``vo-archive db init`` records the configured one), so the setting
stays the one place the authority is kept.
"""

from __future__ import annotations

from alembic import op

revision = "0008_inline_did"
down_revision = "0002_tap"
branch_labels = ("did",)
depends_on = None

UPGRADE = r"""
CREATE FUNCTION archive_meta.write_publisher_did() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    authority text;
BEGIN
    SELECT value INTO authority FROM archive_meta.setting
    WHERE name = 'publisher_authority';
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION archive.publisher_did('
        'product_id bigint, version_no integer) RETURNS text '
        'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
        format('SELECT %L || ''/pessto?'' || $1 || ''/v'' || $2', authority));
    RETURN NULL;
END
$fn$;

CREATE TRIGGER setting_publisher_did
AFTER INSERT OR UPDATE OF value ON archive_meta.setting
FOR EACH ROW WHEN (NEW.name = 'publisher_authority')
EXECUTE FUNCTION archive_meta.write_publisher_did();

-- write it now (a trigger function runs only from its trigger)
UPDATE archive_meta.setting SET value = value WHERE name = 'publisher_authority';
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS setting_publisher_did ON archive_meta.setting;
DROP FUNCTION IF EXISTS archive_meta.write_publisher_did();
CREATE OR REPLACE FUNCTION archive.publisher_did(product_id bigint, version_no integer)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog AS $$
    SELECT (SELECT value FROM archive_meta.setting
            WHERE name = 'publisher_authority')
           || '/pessto?' || $1 || '/v' || $2
$$;
"""


def upgrade() -> None:
    """Make the publisher DID function a constant expression the views inline."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Go back to reading the authority at every call."""
    op.execute(DOWNGRADE)
