"""Accounts, API tokens, and runs/targets hidden until one of their products is visible.

Revision ID: 0005_auth
Revises: 0001_core

- ``archive.account``: people and pipelines that may authenticate, with their
  roles (``member`` sees proprietary data, ``reducer`` may also upload,
  ``admin``) and an optional password hash (scrypt) for HTTP Basic.
- ``archive.token``: API tokens, stored as the SHA-256 of the random token
  (the token itself is shown once, when made).
- ``archive.upload_log``: who pushed which file through the upload endpoint,
  and what ingest did with it.
- ``pessto.runs`` and ``pessto.targets`` show a run or a target only when the
  caller may see at least one of its products: the name and position of a
  transient observed only in proprietary data are proprietary too.

Both tables live in the internal ``archive`` schema, which no published schema,
TAP or the reader role can reach.
"""

from __future__ import annotations

from alembic import op

revision = "0005_auth"
down_revision = "0001_core"
branch_labels = ("auth",)
depends_on = None

UPGRADE = r"""
CREATE TABLE archive.account (
    account_id    serial PRIMARY KEY,
    name          text NOT NULL UNIQUE
                  CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    roles         text[] NOT NULL DEFAULT '{}'
                  CHECK (roles <@ ARRAY['member', 'reducer', 'admin']::text[]),
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE archive.account IS
    'Who may authenticate: roles member (sees proprietary data), reducer (may '
    'upload products), admin';
COMMENT ON COLUMN archive.account.password_hash IS
    'scrypt$N$r$p$salt$hash (hex) for HTTP Basic, or NULL: tokens only';

CREATE TABLE archive.token (
    token_hash   char(64) PRIMARY KEY,
    account_id   integer NOT NULL REFERENCES archive.account ON DELETE CASCADE,
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX token_account ON archive.token (account_id);
COMMENT ON TABLE archive.token IS
    'API tokens (Authorization: Bearer, or the password of HTTP Basic), stored as '
    'the SHA-256 (hex) of the token; the token is shown once';

CREATE TABLE archive.upload_log (
    upload_id   bigserial PRIMARY KEY,
    account     text NOT NULL,
    remote_addr text,
    filename    text NOT NULL,
    file_size   bigint NOT NULL,
    outcome     text NOT NULL,
    reason      text,
    product_id  bigint,
    version_no  integer,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_log_time ON archive.upload_log (uploaded_at);
COMMENT ON TABLE archive.upload_log IS
    'Files pushed through the upload endpoint: who, what, and what ingest did';

CREATE OR REPLACE VIEW pessto.runs AS
SELECT r.run_id, r.name, r.eso_run, r.programme, r.instrument,
       r.first_night, r.last_night
FROM archive.run r
WHERE EXISTS (SELECT 1 FROM archive.product p
              WHERE p.run_id = r.run_id AND archive.visible(p.release_date));

CREATE OR REPLACE VIEW pessto.targets AS
SELECT t.target_id, t.name, t.ra, t.dec, t.marshall_id, t.classification,
       t.redshift
FROM archive.target t
WHERE EXISTS (SELECT 1 FROM archive.product p
              WHERE p.target_id = t.target_id AND archive.visible(p.release_date));
"""

DOWNGRADE = r"""
CREATE OR REPLACE VIEW pessto.runs AS
SELECT r.run_id, r.name, r.eso_run, r.programme, r.instrument,
       r.first_night, r.last_night
FROM archive.run r;

CREATE OR REPLACE VIEW pessto.targets AS
SELECT t.target_id, t.name, t.ra, t.dec, t.marshall_id, t.classification,
       t.redshift
FROM archive.target t;

DROP TABLE IF EXISTS archive.upload_log, archive.token, archive.account;
"""


def upgrade() -> None:
    """Create accounts and tokens; hide runs and targets with no visible product."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Remove accounts and tokens (they are lost)."""
    op.execute(DOWNGRADE)
