"""Validation of VO documents against the IVOA XML schemas, offline.

The schemas' ``schemaLocation`` attributes point at web addresses; here every
import is resolved to a local copy of the schema files (a folder holding
``VOResource.xsd``, ``OAI-PMH.xsd``, ...), chosen by target namespace or by
file name, so validation never touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lxml import etree

_TARGET = re.compile(rb'targetNamespace="([^"]+)"')
#: Where two files declare one namespace, the one to use.
PREFERRED = {"http://www.ivoa.net/xml/SSA/v1.1": "SSA.xsd",
             "http://www.ivoa.net/xml/STC/stc-v1.30.xsd": "stc.xsd"}


class SchemaFolderError(Exception):
    """The schema folder lacks a schema a document needs."""


def namespace_files(folder: Path) -> dict[str, Path]:
    """Return the schema file of each target namespace found in ``folder``."""
    out: dict[str, Path] = {}
    for path in sorted(folder.glob("*.xsd")):
        m = _TARGET.search(path.read_bytes()[:4096])
        if m:
            ns = m.group(1).decode()
            if ns not in out or PREFERRED.get(ns) == path.name:
                out[ns] = path
    return out


class _LocalResolver(etree.Resolver):  # type: ignore[misc]  # lxml is untyped
    def __init__(self, folder: Path, by_ns: dict[str, Path]) -> None:
        super().__init__()
        self.folder = folder
        self.by_ns = by_ns

    def resolve(self, system_url: str, public_id: str | None,
                context: object) -> object:
        for key in (system_url, public_id or ""):
            if key in self.by_ns:
                return self.resolve_filename(str(self.by_ns[key]), context)
        name = system_url.rstrip("/").rsplit("/", 1)[-1]
        if (self.folder / name).is_file():
            return self.resolve_filename(str(self.folder / name), context)
        for ns, path in self.by_ns.items():  # e.g. .../VOResource/v1.0
            if system_url.rstrip("/") == ns.rstrip("/"):
                return self.resolve_filename(str(path), context)
        return None


def validator(folder: Path, namespaces: list[str]) -> etree.XMLSchema:
    """Return one schema that validates documents using ``namespaces``.

    Raises
    ------
    SchemaFolderError
        If the folder has no schema for one of the namespaces.
    """
    by_ns = namespace_files(folder)
    missing = [ns for ns in namespaces if ns not in by_ns]
    if missing:
        raise SchemaFolderError(f"{folder}: no schema for {', '.join(missing)}")
    imports = "".join(
        f"<xs:import namespace={quoteattr(ns)} "
        f"schemaLocation={quoteattr(by_ns[ns].resolve().as_uri())}/>"
        for ns in namespaces)
    wrapper = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
               'targetNamespace="urn:vo-archive:validation" '
               f'elementFormDefault="qualified">{imports}</xs:schema>')
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalResolver(folder, by_ns))
    doc = etree.fromstring(wrapper.encode(), parser,
                           base_url=(folder.resolve() / "wrapper.xsd").as_uri())
    return etree.XMLSchema(doc)


def problems(schema: etree.XMLSchema, document: bytes) -> list[str]:
    """Return the validation errors of ``document`` (empty when valid)."""
    doc = etree.fromstring(document, etree.XMLParser(no_network=True,
                                                      resolve_entities=False))
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
