"""Database schema of the archive: alembic migrations and SQL resources."""

from __future__ import annotations

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent
