"""Row-level security on classifications, as on the products they describe.

Revision ID: 0014_classification_security
Revises: 0009_row_security, 0010_classification

``pessto.classifications`` and ``pessto.classification_matches`` join
``archive.classification`` to the versions and products. The products' and
versions' policies (0009_row_security) hide proprietary rows from the views'
owner, but a caller's condition on a classification column (``1 / (redshift -
0.0345)``) could be evaluated on ``archive.classification`` before that join
and tell a hidden spectrum's redshift by its error. The classification table
gets the same policy: a row is visible to the views' owner only when its
version is (or the caller may see everything).
"""

from __future__ import annotations

from alembic import op

revision = "0014_classification_security"
down_revision = ("0009_row_security", "0010_classification")
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE archive.classification ENABLE ROW LEVEL SECURITY;
DO $do$
DECLARE
    everything text := format(
        '(SELECT current_user = %L OR coalesce(current_setting('
        '''vo_archive.proprietary'', true), '''') = ''on'')', current_user);
BEGIN
    EXECUTE format($p$
        CREATE POLICY published ON archive.classification FOR SELECT
        TO pessto_published
        USING (%s OR archive.version_public(version_id)) $p$, everything);
END
$do$;
GRANT SELECT ON archive.classification TO pessto_published;
"""

DOWNGRADE = r"""
DROP POLICY IF EXISTS published ON archive.classification;
ALTER TABLE archive.classification DISABLE ROW LEVEL SECURITY;
"""


def upgrade() -> None:
    """Enable the policy."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the policy."""
    op.execute(DOWNGRADE)
