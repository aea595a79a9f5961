"""STILTS votlint: TOPCAT's own VOTable checker, run on the services' answers."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def votlint(body: bytes, version: str | None = None) -> list[str]:
    """Return what ``stilts votlint`` reports on ``body`` (errors and warnings).

    UCDs and units are checked too (``ucd=true unit=true``); ``version`` forces
    the VOTable version instead of the document's own.
    """
    if shutil.which("stilts") is None:
        pytest.fail("stilts is not installed (./dev.sh setup installs it)")
    cmd = ["stilts", "votlint", "ucd=true", "unit=true", "validate=true", "votable=-"]
    if version:
        cmd.insert(-1, f"version={version}")
    out = subprocess.run(cmd, input=body, capture_output=True, timeout=120)
    lines = (out.stdout + out.stderr).decode(errors="replace").splitlines()
    return [line for line in lines if line.strip()
            and not line.startswith(("Picked up", "OpenJDK"))]
