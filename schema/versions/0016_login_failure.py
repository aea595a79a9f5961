"""Wrong passwords counted in the database, shared by every web node.

Revision ID: 0016_login_failure
Revises: 0011_sessions

``archive.login_failure``: one row per wrong password (HTTP Basic, ``/login``,
the sign-in form), by account name and client address. The limit on password
guesses (:data:`vo_archive.web.auth.MAX_FAILURES` per
:data:`vo_archive.web.auth.FAILURE_WINDOW`) counts these rows, so it holds however
many web workers and nodes a guesser's requests are spread over; rows older
than the window are deleted as new failures come in.
"""

from __future__ import annotations

from alembic import op

revision = "0016_login_failure"
down_revision = "0011_sessions"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE archive.login_failure (
    account_name text NOT NULL,
    remote_addr  text NOT NULL,
    failed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failure_key
    ON archive.login_failure (account_name, remote_addr, failed_at);
CREATE INDEX login_failure_age ON archive.login_failure (failed_at);
COMMENT ON TABLE archive.login_failure IS
    'Wrong passwords by account name and client address, for the limit on '
    'password guesses shared by every web node; rows past the window are purged';
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS archive.login_failure;
"""


def upgrade() -> None:
    """Add the table of wrong passwords."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Remove it (the limit then starts afresh)."""
    op.execute(DOWNGRADE)
