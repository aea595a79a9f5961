"""VO positional services: an index that bounds footprint sizes.

The DAL services find footprints overlapping a region through the HEALPix
index of their centres, widened by the largest footprint: ``max(fov)`` must be
cheap, so it gets a B-tree (an index-only look-up instead of a scan).

Revision ID: 0003_vo
Revises: 0001_core
"""

from __future__ import annotations

from alembic import op

revision = "0003_vo"
down_revision = "0001_core"
branch_labels = ("vo",)
depends_on = None


def upgrade() -> None:
    """Add the index on footprint sizes."""
    op.execute("CREATE INDEX IF NOT EXISTS version_fov ON archive.version (fov)")


def downgrade() -> None:
    """Drop the index."""
    op.execute("DROP INDEX IF EXISTS archive.version_fov")
