"""``vo-archive db``: the database and its embedded cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import ClusterError, EmbeddedCluster
from vo_archive.db.engine import cluster_for, get_engine
from vo_archive.db.readers import check_nodes
from vo_archive.ingest.recovery import check
from vo_archive.ingest.storage import Storage


def register(sub: Any) -> None:
    """Add the ``db`` command group."""
    p = sub.add_parser("db", help="create, start, stop, upgrade and check the database")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    add_command(dsub, "init", cmd_init,
                "create the database (and the embedded cluster) or upgrade its schema")
    add_command(dsub, "upgrade", cmd_init, "apply pending schema migrations")
    add_command(dsub, "start", cmd_start, "start the embedded PostgreSQL cluster")
    add_command(dsub, "stop", cmd_stop, "stop the embedded PostgreSQL cluster")
    st = add_command(
        dsub, "status", cmd_status, "say where the database is and its state"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--credentials", action="store_true",
                    help="also print the embedded cluster's superuser and its DSN "
                         "(read from the cluster's 0600 file: run as its owner)")
    ck = add_command(dsub, "check", cmd_check,
                     "recover crashed ingests; check every file against the database")
    ck.add_argument("--deep", action="store_true", help="also verify SHA-256 checksums")
    ck.add_argument("--dry-run", action="store_true",
                    help="report orphan files without removing them")
    ap = add_command(dsub, "apply-policy", cmd_apply_policy,
                     "recompute every product's release date from the [policy] "
                     "configuration")
    ap.add_argument("--dry-run", action="store_true",
                    help="say what would change without changing it")
    sb = dsub.add_parser("standby", help="hot standbys of the embedded cluster "
                         "(streaming replication) for read-only work")
    sbsub = sb.add_subparsers(dest="standby_command", metavar="ACTION", required=True)
    sba = add_command(sbsub, "add", cmd_standby_add,
                      "copy the embedded cluster into DIR (pg_basebackup) and start "
                      "it there as a hot standby; add its DSN to read_dsns")
    sba.add_argument("dir", help="data folder of the new standby")
    sba.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    for action, handler in (("start", cmd_standby_start), ("stop", cmd_standby_stop)):
        sbx = add_command(sbsub, action, handler,
                          f"{action} a standby made by 'db standby add'")
        sbx.add_argument("dir", help="data folder of the standby")


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    """Create or upgrade the schema."""
    engine = get_engine(settings)
    revisions = migrate.upgrade(engine, settings.publisher_authority)
    where = "external server" if settings.dsn else f"embedded cluster {settings.pgdata}"
    print(f"database ready ({where}); schema at {', '.join(revisions)}")
    return 0


def _embedded_only(settings: Settings) -> None:
    if settings.dsn:
        raise CommandError(
            "VO_ARCHIVE_DSN points at an existing server; the archive does not start "
            "or stop it"
        )


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start (creating if needed) the embedded cluster."""
    _embedded_only(settings)
    cluster = cluster_for(settings)
    if not cluster.initialised:
        cluster.init()
    else:
        cluster.start()
    print(f"embedded PostgreSQL running at 127.0.0.1:{cluster.info.port} "
          f"({cluster.pgdata})")
    return 0


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the embedded cluster."""
    _embedded_only(settings)
    cluster = cluster_for(settings)
    if not cluster.initialised:
        print(f"no embedded cluster at {cluster.pgdata}")
        return 0
    was = cluster.stop()
    print("stopped" if was else "was not running")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Describe the database."""
    info: dict[str, Any] = {
        "home": str(settings.home),
        "storage": str(settings.storage_dir),
    }
    if settings.dsn:
        info["server"] = "external (VO_ARCHIVE_DSN)"
    else:
        info["server"] = "embedded"
        cluster = cluster_for(settings)
        info.update(cluster.status())
        if args.credentials:
            info.update(_credentials(cluster))
    if settings.dsn or info.get("running"):
        engine = get_engine(settings)
        with engine.connect() as conn:
            info["schema"] = migrate.current_revisions(conn)
            if info["schema"]:
                info["products"] = conn.execute(
                    text("SELECT count(*) FROM archive.product")).scalar_one()
                info["versions"] = conn.execute(
                    text("SELECT count(*) FROM archive.version")).scalar_one()
                info["runs"] = conn.execute(
                    text("SELECT count(*) FROM archive.run")).scalar_one()
                cone = conn.execute(text(
                    "SELECT extversion FROM pg_extension "
                    "WHERE extname = 'vo_archive_cone'")).scalar()
                info["cone ranges"] = (
                    f"made in the server (vo_archive_cone {cone})" if cone
                    else "made by the archive (vo_archive_cone not installed)")
    if settings.read_dsns and (settings.dsn or info.get("running")):
        info["nodes"] = _node_lines(settings)
    elif settings.read_dsns:  # never started by a status
        info["standbys"] = f"{len(settings.read_dsns)} configured; the primary is " \
                           "not running"
    else:
        info["standbys"] = "none configured (read_dsns): every read goes to the primary"
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if key == "nodes":
                for i, node in enumerate(value):
                    label = node["role"] if i == 0 else f"standby {i}"
                    print(f"{label:>12}: {_show_node(node)}")
                continue
            print(f"{key:>12}: {value}")
    return 0


def _node_lines(settings: Settings) -> list[dict[str, Any]]:
    """Check the primary and each configured standby once (``read_dsns``)."""
    return [{"role": n.role, "where": n.where, "healthy": n.healthy,
             "lag_s": None if n.lag_s is None else round(n.lag_s, 3), "note": n.note}
            for n in check_nodes(settings)]


def _show_node(node: dict[str, Any]) -> str:
    lag = "" if node["lag_s"] is None else f", lag {node['lag_s']:.3f} s"
    state = "healthy" if node["healthy"] else "UNHEALTHY"
    return f"{node['where']} {state}{lag} ({node['note']})"


def cmd_standby_add(args: argparse.Namespace, settings: Settings) -> int:
    """Make a hot standby of the embedded cluster."""
    if settings.dsn:
        raise CommandError(
            "VO_ARCHIVE_DSN points at an existing server: make its standbys with "
            "pg_basebackup -R on their hosts and list them in read_dsns")
    cluster = cluster_for(settings)
    if not cluster.initialised:
        raise CommandError(f"no embedded cluster at {cluster.pgdata}; run "
                           "'vo-archive db init' first")
    cluster.start()
    try:
        standby = cluster.make_standby(Path(args.dir), args.port)
    except ClusterError as exc:
        raise CommandError(str(exc)) from None
    print(f"standby running at 127.0.0.1:{standby.info.port} ({standby.pgdata}), "
          f"streaming from {cluster.pgdata}")
    print("to read from it, add its DSN to read_dsns under [archive] in "
          "archive.toml (it holds the cluster's password: keep the file private):")
    print(f'  read_dsns = ["{standby.dsn()}"]')
    return 0


def _standby_at(settings: Settings, folder: str) -> EmbeddedCluster:
    _embedded_only(settings)
    standby = EmbeddedCluster(Path(folder))
    if not standby.initialised:
        raise CommandError(f"no standby at {standby.pgdata}")
    return standby


def cmd_standby_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start a standby made by ``db standby add``."""
    standby = _standby_at(settings, args.dir)
    standby.start()
    print(f"standby running at 127.0.0.1:{standby.info.port} ({standby.pgdata})")
    return 0


def cmd_standby_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop a standby made by ``db standby add``."""
    was = _standby_at(settings, args.dir).stop()
    print("stopped" if was else "was not running")
    return 0


def _credentials(cluster: EmbeddedCluster) -> dict[str, str]:
    """Return the embedded cluster's superuser, where it is kept, and its DSN."""
    try:
        info = cluster.info
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"cannot read {cluster.info_path} ({exc.__class__.__name__}): it holds "
            "the superuser password and is readable by its owner only (root)"
        ) from None
    return {"superuser": info.user, "credentials": str(cluster.info_path),
            "dsn": info.dsn()}


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Recover dead ingest sessions and check storage against the database."""
    engine = get_engine(settings)
    conn = engine.raw_connection()
    try:
        report = check(conn, Storage(settings.storage_dir), deep=args.deep,
                       remove_orphans=not args.dry_run)
    finally:
        conn.close()
    print(f"checked {report.versions_checked} archived files")
    if report.dead_sessions:
        print(f"recovered crashed ingest sessions: {report.dead_sessions}")
    verb = "orphan files found" if args.dry_run else "removed orphan files"
    if report.removed_files:
        print(f"{verb}: {len(report.removed_files)}")
    for label, items in (("missing", report.missing_files),
                         ("wrong size", report.wrong_sizes),
                         ("bad checksum", report.bad_checksums)):
        for item in items:
            print(f"{label}: {item}")
    print("OK" if report.ok else "PROBLEMS FOUND")
    return 0 if report.ok else 1


def cmd_apply_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Recompute release dates under the configured policy."""
    from vo_archive.ingest.policy import apply_policy

    change = apply_policy(get_engine(settings), settings.policy, dry_run=args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    print(f"checked {change.checked} products; {verb} {change.changed} release dates "
          f"({change.made_public} become public, {change.made_proprietary} become "
          "proprietary)")
    for pid, old, new in change.examples:
        print(f"  product {pid}: {old or 'never'} -> {new or 'never'}")
    return 0
