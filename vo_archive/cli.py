"""The ``vo-archive`` command line.

Each command group lives in the module that owns it and registers itself with
``register(subparsers)``; :data:`COMMAND_MODULES` lists them. A handler gets the
parsed arguments and the settings and returns the exit status. User mistakes and
unavailable services end with a one-line message and a non-zero status, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vo_archive.config import ConfigError, Settings, load_settings

log = logging.getLogger("vo_archive")

#: Modules that add command groups (each has ``register(subparsers)``).
COMMAND_MODULES = (
    "vo_archive.commands.dbcmd",
    "vo_archive.commands.ingestcmd",
    "classify.pendingcmd",
    "vo_archive.commands.servecmd",
    "vo_archive.commands.usercmd",
    "replication.cli",
    "vo_archive.commands.exportcmd",
    "vo_archive.commands.workercmd",
    "vo_archive.commands.registrycmd",
    "vo_archive.commands.classifycmd",
    "vo_archive.commands.marshallcmd",
    "vo_archive.commands.storagecmd",
)

Handler = Callable[[argparse.Namespace, Settings], int]

#: Environment a command needs before numpy and its libraries load: the job
#: workers are one process per core, each with one numerical thread (more would
#: only fight over the same cores).
COMMAND_ENV: dict[str, dict[str, str]] = {
    "worker": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"},
}


class CommandError(Exception):
    """A failure to report to the user as one line, with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="vo-archive",
        description="PESSTO archive: ingest, storage, VO services, retrieval.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import OperationalError

    from vo_archive.db.cluster import ClusterError
    from vo_archive.db.migrate import SchemaError
    from vo_archive.ingest.storage import StorageFull

    return (ConfigError, CommandError, ClusterError, SchemaError, OperationalError,
            StorageFull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), "")
    for key, value in COMMAND_ENV.get(command, {}).items():
        os.environ.setdefault(key, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        settings = load_settings()
        return handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _known_errors() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"vo-archive: error: {message}", file=sys.stderr)
        return 2


def add_command(sub: Any, name: str, handler: Handler, help_text: str
                ) -> argparse.ArgumentParser:
    """Add a subcommand whose handler is ``handler``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                description=help_text)
    p.set_defaults(handler=handler)
    return p

