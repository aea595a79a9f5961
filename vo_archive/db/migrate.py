"""Create and upgrade the archive's schema with alembic (migrations in ``schema/``)."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, exc, text

from schema import SCHEMA_DIR

log = logging.getLogger(__name__)


class SchemaError(Exception):
    """The database lacks something the schema needs (an extension, a privilege)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an alembic configuration for the migrations in ``schema/``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCHEMA_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(SCHEMA_DIR / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def check_extensions(conn: Connection) -> None:
    """Stop with a message naming the package to install if pgSphere is missing.

    Raises
    ------
    SchemaError
        If the server does not offer the ``pg_sphere`` extension.
    """
    row = conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_sphere'")
    ).first()
    if row is None:
        major = conn.execute(text("SHOW server_version_num")).scalar_one()
        nn = int(major) // 10000
        raise SchemaError(
            "the PostgreSQL server lacks the pgSphere extension (pg_sphere), needed "
            f"for ADQL geometry; install it (Debian: apt-get install "
            f"postgresql-{nn}-pgsphere) and run 'vo-archive db init' again"
        )


def create_pgsphere(conn: Connection) -> None:
    """Create pgSphere, or say plainly why the server cannot.

    Raises
    ------
    SchemaError
        If the extension's script fails: pgSphere 1.1.1 (Debian bookworm) does
        on PostgreSQL 15.20, which refuses its operator declarations
        ("commutator operator @> is already the commutator of operator <@").
    """
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_sphere"))
    except exc.DBAPIError as e:
        first = str(e.orig).strip().splitlines()[0]
        if getattr(e.orig, "pgcode", None) != "42P13":  # invalid_function_definition
            raise SchemaError(f"cannot create pgSphere: {first}") from e
        versions = conn.execute(text(
            "SELECT current_setting('server_version'), (SELECT default_version "
            "FROM pg_available_extensions WHERE name = 'pg_sphere')")).one()
        raise SchemaError(
            f"PostgreSQL {versions[0]} cannot create pgSphere {versions[1]}: "
            f"{first}. pgSphere 1.1.1 installs on PostgreSQL 15.18 (Debian bookworm) "
            "but not on 15.20 (bookworm-security); install a server version it "
            "accepts or a newer pgSphere, then run 'vo-archive db init' again"
        ) from e


def optional_extensions(conn: Connection) -> bool:
    """Create the archive's own ``vo_archive_cone`` extension where it can be.

    The extension (``schema/ext/vo_archive_cone``) makes the HEALPix ranges of
    cone searches in the server. Without it (not installed on the server, or
    the archive's role may not create C extensions) the archive makes the same
    ranges itself; nothing else changes. Run at every ``db init``/``upgrade``,
    so an extension installed later is taken up then.

    Returns
    -------
    bool
        Whether the extension is in the database.
    """
    have = conn.execute(text(
        "SELECT 1 FROM pg_extension WHERE extname = 'vo_archive_cone'")).first()
    if have is not None:
        return True
    offered = conn.execute(text(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vo_archive_cone'")).first()
    if offered is None:
        log.info("extension vo_archive_cone not installed on the server: cone "
                 "ranges are made by the archive (see schema/ext/vo_archive_cone)")
        return False
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION vo_archive_cone SCHEMA archive"))
    except exc.DBAPIError as e:
        log.warning("extension vo_archive_cone not created (%s): cone ranges are "
                    "made by the archive", str(e.orig).strip().splitlines()[0])
        return False
    return True


#: Functions marked LEAKPROOF (superuser only) so that a cone search in ADQL
#: can use its GiST index under the row-level policies
#: (schema/versions/0009_row_security.py). Each returns a value computed from
#: its arguments alone and raises no error for any argument value, so
#: evaluating it on a hidden row reveals nothing:
#: - tap_adql.sky_point, tap_adql.sky_circle: see their definitions in the
#:   migration;
#: - pgSphere's ``spoint @ scircle`` (C function spherepoint_in_circle):
#:   compares the great-circle distance of two points with the radius; no
#:   error path.
LEAKPROOF = ("tap_adql.sky_point(double precision, double precision)",
             "tap_adql.sky_circle({sphere}.spoint, double precision)",
             "{sphere}.spoint_contained_by_circle({sphere}.spoint, {sphere}.scircle)")

#: Gives the published views to ``pessto_published``, the role the row-level
#: policies restrict (schema/versions/0009_row_security.py).
OWN_VIEWS = r"""
DO $$
DECLARE v regclass;
BEGIN
    FOR v IN SELECT c.oid::regclass FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('ivoa', 'pessto') AND c.relkind IN ('v', 'm')
               AND c.relowner <> 'pessto_published'::regrole
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO pessto_published', v);
    END LOOP;
END
$$;
"""


def own_published_views(conn: Connection) -> None:
    """Give every view of the published schemas to ``pessto_published``.

    The role may read every archive table, as the views' former owner could
    (a view added by a later migration may read a new one); only the tables
    with row-level policies hide rows from it.
    """
    conn.execute(text("GRANT SELECT ON ALL TABLES IN SCHEMA archive "
                      "TO pessto_published"))
    conn.execute(text(OWN_VIEWS))


def mark_leakproof(conn: Connection) -> bool:
    """Mark :data:`LEAKPROOF` functions LEAKPROOF where the role may (superuser).

    Without the mark, ADQL cone searches stay correct under the row-level
    policies but cannot use their GiST index (schema/versions/0009_row_security.py).

    Returns
    -------
    bool
        Whether every function is marked.
    """
    sphere = conn.execute(text(
        "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n "
        "ON n.oid = e.extnamespace WHERE e.extname = 'pg_sphere'")).scalar_one()
    signatures = [s.format(sphere=sphere) for s in LEAKPROOF]
    missing = [s for s in signatures if not conn.execute(text(
        "SELECT proleakproof FROM pg_proc WHERE oid = to_regprocedure(:s)"),
        {"s": s}).scalar()]
    if not missing:
        return True
    if not conn.execute(text(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        log.warning("the database role is not a superuser and cannot mark %s "
                    "LEAKPROOF: ADQL cone searches scan instead of using their "
                    "index (run 'vo-archive db init' once as a superuser)",
                    ", ".join(missing))
        return False
    for signature in missing:
        # signatures are constants of this module, not input
        conn.execute(text(f"ALTER FUNCTION {signature} LEAKPROOF"))
    return True


def secure_published_views(conn: Connection) -> None:
    """Give the published views to their owner role and mark LEAKPROOF functions.

    Run at every upgrade once the row-level security migration is in: a later
    migration that drops and creates a view gives it to the migrating role, for
    which the policies would not apply.
    """
    # roles are the cluster's: ask whether this database has the policies
    if conn.execute(text(
            "SELECT 1 FROM pg_policy WHERE polname = 'published' "
            "AND polrelid = to_regclass('archive.version')")).first() is None:
        return
    own_published_views(conn)
    mark_leakproof(conn)


def upgrade(engine: Engine, authority: str | None = None) -> list[str]:
    """Bring the schema to the newest revision of every migration branch.

    Parameters
    ----------
    engine
        Engine of the archive database.
    authority
        IVOA publisher authority to record (used in publisher DIDs).

    Returns
    -------
    list of str
        The revisions now applied.
    """
    with engine.begin() as conn:
        check_extensions(conn)
        create_pgsphere(conn)
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS archive_meta"))
        # One upgrader at a time, even from several hosts.
        conn.execute(text("SELECT pg_advisory_xact_lock(7355608, 1)"))
        command.upgrade(alembic_config(conn), "heads")
        optional_extensions(conn)
        secure_published_views(conn)
        if authority:
            conn.execute(
                text(
                    "UPDATE archive_meta.setting SET value = :v "
                    "WHERE name = 'publisher_authority'"
                ),
                {"v": authority},
            )
        return current_revisions(conn)


def current_revisions(conn: Connection) -> list[str]:
    """Return the revisions applied to the database (empty when uninitialised)."""
    ctx = MigrationContext.configure(
        conn, opts={"version_table_schema": "archive_meta"}
    )
    return sorted(ctx.get_current_heads())


def pending_revisions(engine: Engine) -> list[str]:
    """Return the head revisions not yet applied."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as conn:
        have = set(current_revisions(conn))
    return sorted(set(script.get_heads()) - have)
