"""The IVOA XML schemas the tests validate documents against, offline.

They come with the project's reference material (``../shared/data/ivoa-schemata``
beside the repository, or the folder named by ``VO_ARCHIVE_SCHEMATA``). Where
they are missing the validating tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from vo_archive.vo.xmlschema import validator

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"


def schemata_folder() -> Path:
    """Return the schema folder, or skip (fail in CI) when it is missing."""
    env = os.environ.get("VO_ARCHIVE_SCHEMATA")
    folder = (Path(env) if env else
              Path(__file__).resolve().parents[2] / "shared" / "data" / "ivoa-schemata")
    if not (folder / "VOResource.xsd").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the IVOA schemas are not at {folder}")
        pytest.skip(f"the IVOA schemas are not at {folder}")
    return folder


@cache
def _schema(namespaces: tuple[str, ...]) -> etree.XMLSchema:
    return validator(schemata_folder(), list(namespaces))


def assert_valid(document: bytes, *namespaces: str) -> etree._Element:
    """Validate ``document`` against the schemas of ``namespaces``; return its root."""
    from vo_archive.vo.registry import EXTENSION_NS, RI_NS, VG_NS, VR_NS, VS_NS

    everything = (OAI_NS, OAI_DC_NS, RI_NS, VR_NS, VS_NS, VG_NS,
                  *EXTENSION_NS.values(), *namespaces)
    schema = _schema(tuple(dict.fromkeys(everything)))
    root = etree.fromstring(document)
    assert schema.validate(root), [f"line {e.line}: {e.message}"
                                   for e in schema.error_log][:10]
    return root
