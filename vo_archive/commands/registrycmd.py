"""``vo-archive registry``: print or check the archive's VOResource records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lxml import etree

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine


#: Namespaces a record may use, for schema validation.
def _namespaces() -> list[str]:
    from vo_archive.vo.registry import EXTENSION_NS, RI_NS, VG_NS, VR_NS, VS_NS

    return [RI_NS, VR_NS, VS_NS, VG_NS, *EXTENSION_NS.values()]


def register(sub: Any) -> None:
    """Add the ``registry`` command."""
    p = add_command(sub, "registry", cmd_registry,
                    "print the archive's registry records (VOResource), or check them")
    p.add_argument("identifier", nargs="?",
                   help="print only this record (an IVOID under the authority)")
    p.add_argument("--list", action="store_true",
                   help="print identifier, type and datestamp of each record")
    p.add_argument("--check", action="store_true",
                   help="check every record: identifiers under the authority, "
                        "absolute access URLs, well-formed XML, and with "
                        "--schemas valid against the IVOA schemas")
    p.add_argument("--schemas", type=Path,
                   help="folder of IVOA XML schemas (VOResource.xsd, ...) to "
                        "validate the records against, offline")


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    """Print or check the registry records."""
    from vo_archive.app import create_app
    from vo_archive.vo.registry import authority_id, records

    if not settings.base_url:
        print("note: no [service] base_url configured; access URLs below use "
              "http://127.0.0.1:8000")
    app = create_app(settings)
    with app.test_request_context(base_url=settings.base_url
                                  or "http://127.0.0.1:8000"):
        recs = records(settings, get_engine(settings))
    if args.identifier:
        recs = [r for r in recs if r.identifier == args.identifier]
        if not recs:
            raise CommandError(f"no record {args.identifier}")
    if args.check:
        return _check(recs, authority_id(settings), args.schemas)
    for rec in recs:
        if args.list:
            print(f"{rec.identifier}\t{rec.resource_type}\t"
                  f"{rec.datestamp.isoformat()}")
        else:
            print(rec.xml)
    return 0


def _check(recs: list[Any], authority: str, schemas: Path | None) -> int:
    validator = None
    if schemas is not None:
        from vo_archive.vo.xmlschema import SchemaFolderError
        from vo_archive.vo.xmlschema import validator as make

        try:
            validator = make(schemas, _namespaces())
        except SchemaFolderError as exc:
            raise CommandError(str(exc)) from None
    bad = 0
    for rec in recs:
        found: list[str] = []
        if rec.identifier != authority and not rec.identifier.startswith(
                authority + "/"):
            found.append(f"identifier is not under {authority}")
        try:
            doc = etree.fromstring(rec.xml.encode())
        except etree.XMLSyntaxError as exc:
            found.append(f"not well-formed: {exc}")
        else:
            found += [f"access URL not absolute: {u.text}"
                      for u in doc.iter("accessURL")
                      if not (u.text or "").startswith(("http://", "https://"))]
            if validator is not None and not validator.validate(doc):
                found += [f"line {e.line}: {e.message}" for e in validator.error_log]
        print(f"{rec.identifier}: {'ok' if not found else 'FAILED'}")
        for f in found:
            print(f"  {f}")
        bad += bool(found)
    print(f"{len(recs) - bad} of {len(recs)} records valid")
    return 1 if bad else 0
