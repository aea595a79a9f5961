"""Sign-in: short-lived login tokens and browser sessions.

Revision ID: 0011_sessions
Revises: 0005_auth

- ``archive.token.kind``: ``api`` for the tokens an administrator makes with
  ``vo-archive user token`` (the tokens there before this revision), ``login``
  for the short-lived tokens ``/login`` hands out in exchange for a password.
  Both are used alike (``Authorization: Bearer`` or the password of HTTP Basic)
  and both are stored as their SHA-256 only.
- ``archive.session``: browser sessions made by the sign-in form, one row per
  session cookie, stored as the SHA-256 of the cookie's value. Sessions live in
  the database, not in a web worker, so any number of web nodes share them;
  signing out deletes the row.
"""

from __future__ import annotations

from alembic import op

revision = "0011_sessions"
down_revision = "0005_auth"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE archive.token
    ADD COLUMN kind text NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'login'));
COMMENT ON COLUMN archive.token.kind IS
    'api: made by an administrator (vo-archive user token); login: handed out by '
    '/login for a password, short-lived';
CREATE INDEX token_expiry ON archive.token (expires_at) WHERE kind = 'login';

CREATE TABLE archive.session (
    session_hash char(64) PRIMARY KEY,
    account_id   integer NOT NULL REFERENCES archive.account ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    remote_addr  text,
    user_agent   text
);
CREATE INDEX session_account ON archive.session (account_id);
CREATE INDEX session_expiry ON archive.session (expires_at);
COMMENT ON TABLE archive.session IS
    'Browser sessions of the sign-in form, stored as the SHA-256 (hex) of the '
    'session cookie; signing out deletes the row';
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS archive.session;
DELETE FROM archive.token WHERE kind = 'login';
DROP INDEX IF EXISTS archive.token_expiry;
ALTER TABLE archive.token DROP COLUMN IF EXISTS kind;
"""


def upgrade() -> None:
    """Add token kinds and the browser session table."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Remove sessions and login tokens (signed-in callers must sign in again)."""
    op.execute(DOWNGRADE)
