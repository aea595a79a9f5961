"""``vo-archive replicate …``: the replication command group.

`register` adds the group to the archive's argparse CLI; ``python -m
replication`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import psycopg2

from replication.applier import SkipError, StreamHalted, operator_skip
from replication.config import ConfigError, ReplicationConfig, load_config
from replication.install import SetupError, init_stream, request_resync
from replication.restore import restore_master
from replication.runner import run_streams
from replication.status import request_resume, stream_status
from replication.verify import VerifyError, verify_stream

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("replication.toml")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``replicate`` command group to the archive's CLI (``vo-archive``)."""
    rep = subparsers.add_parser("replicate", help="trigger-based replication (PgQ)")
    build_parser(rep)
    rep.set_defaults(handler=_archive_handler)


def _archive_handler(args: argparse.Namespace, settings: object) -> int:
    """Run a subcommand for ``vo-archive`` (the archive settings are not needed)."""
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; report a failure as one line on stderr.

    Returns
    -------
    int
        0 on success, 1 when a stream halted or differs, 2 on an error.
    """
    try:
        return int(args.func(args))
    except (ConfigError, SetupError, VerifyError, SkipError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StreamHalted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg2.Error as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)
        return 2


def build_parser(rep: argparse.ArgumentParser) -> None:
    """Add ``--config`` and the replicate subcommands to ``rep``."""
    rep.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                     help="replication TOML file (default: ./replication.toml)")
    sub = rep.add_subparsers(dest="replicate_cmd", required=True)

    p = sub.add_parser("init", help="set up queue, triggers and slave state")
    p.add_argument("--stream", action="append", help="only this stream (repeatable)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run the replicator(s) until stopped")
    p.add_argument("--stream", action="append", help="only this stream (repeatable)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="position, backlog, lag, last error per stream")
    p.add_argument("--stream", action="append")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("resume", help="make halted streams retry now, not after "
                                      "their backoff")
    p.add_argument("--stream", action="append")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("verify", help="compare master and slave tables")
    p.add_argument("--stream", action="append")
    p.add_argument("--no-wait", action="store_true",
                   help="compare now, without waiting for the slave to catch up")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("resync", help="copy one table afresh while replication runs")
    p.add_argument("table", help="schema.table")
    p.add_argument("--stream", help="stream of the table (if several have it)")
    p.set_defaults(func=cmd_resync)

    p = sub.add_parser("skip", help="apply the open batch without the named event(s), "
                                    "leaving dead-letter rows")
    p.add_argument("--stream", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", type=int, action="append",
                      help="event id (from status/the log; repeatable)")
    what.add_argument("--batch", type=int, help="skip every event of this (open) batch")
    p.add_argument("--reason", help="recorded with the dead-letter rows")
    p.set_defaults(func=cmd_skip)

    p = sub.add_parser("restore", help="rebuild a lost master from its slave")
    p.add_argument("--stream", required=True)
    p.add_argument("--force", action="store_true",
                   help="empty the new master's tables if they hold rows")
    p.set_defaults(func=cmd_restore)


def _config(args: argparse.Namespace) -> ReplicationConfig:
    return load_config(args.config)


def cmd_init(args: argparse.Namespace) -> int:
    """Set up the selected streams."""
    for s in _config(args).select(args.stream):
        added = init_stream(s)
        print(f"{s.name}: ready; tables to copy: {', '.join(added) or 'none'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the selected streams' replicators."""
    run_streams(_config(args).select(args.stream))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the status of the selected streams; 1 if any has an error."""
    stats = [stream_status(s, wake=True) for s in _config(args).select(args.stream)]
    if args.json:
        print(json.dumps([s.as_dict() for s in stats], indent=2, default=str))
    else:
        for st in stats:
            lag = "?" if st.lag_seconds is None else f"{st.lag_seconds:.1f}s"
            print(f"{st.stream}: tick {st.applied_tick}/{st.master_tick} "
                  f"backlog {st.backlog_events} lag {lag} "
                  f"applied {st.events_applied} at {st.applied_at}")
            if st.pending_tables:
                print(f"  copying: {', '.join(st.pending_tables)}")
            if st.last_error:
                print(f"  ERROR: {st.last_error}")
    return 1 if any(s.last_error for s in stats) else 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Wake the selected streams' replicators for an immediate retry."""
    for s in _config(args).select(args.stream):
        request_resume(s)
        print(f"{s.name}: resume requested (see `status`)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Compare the selected streams; 1 if any table differs."""
    ok = True
    for s in _config(args).select(args.stream):
        for rep in verify_stream(s, wait=not args.no_wait, timeout=args.timeout):
            mark = "identical" if rep.identical else "DIFFERENT"
            print(f"{s.name} {rep.table}: {mark} (master {rep.master_rows} rows, "
                  f"slave {rep.slave_rows} rows)")
            for label, keys in (("only on master", rep.only_master),
                                ("only on slave", rep.only_slave),
                                ("differs", rep.different),
                                ("dead letter", rep.dead_letters)):
                for k in keys:
                    print(f"  {label}: {k}")
            ok = ok and rep.identical
    return 0 if ok else 1


def cmd_resync(args: argparse.Namespace) -> int:
    """Mark a table for a fresh copy."""
    cfg = _config(args)
    streams = [s for s in cfg.select([args.stream] if args.stream else None)
               if args.table in s.tables]
    if len(streams) != 1:
        raise SetupError(f"table {args.table} is in {len(streams)} selected streams; "
                         "name one with --stream")
    request_resync(streams[0], args.table)
    print(f"{streams[0].name}: {args.table} will be copied again by the replicator")
    return 0


def cmd_skip(args: argparse.Namespace) -> int:
    """Skip events of a halted stream, recording each in replication.dead_letter."""
    batch, dead = operator_skip(_config(args).stream(args.stream), args.event or [],
                                args.batch, args.reason)
    print(f"{args.stream}: batch {batch} applied without event(s) "
          f"{', '.join(map(str, dead)) or 'none'}; dead-letter rows written")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Rebuild the stream's master from its slave."""
    rep = restore_master(_config(args).stream(args.stream), force=args.force)
    print(f"{rep.stream}: restored {sum(rep.rows.values())} rows into the new master "
          f"({rep.new_master}); generation {rep.generation}")
    if rep.txids_rewound:
        print("  note: the new master's txids are below the old one's; the stream "
              "was re-initialised")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``replicate`` as a program (``python -m replication``)."""
    parser = argparse.ArgumentParser(prog="python -m replication")
    parser.add_argument("-v", "--verbose", action="store_true")
    build_parser(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    return run_command(args)
