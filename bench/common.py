"""What the benchmarks share: a demo archive made once under a home folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vo_archive.config import Settings


def prepare_archive(home: Path, products: int) -> Settings:
    """Make (once) an archive of ``products`` demo products under ``home``."""
    settings = Settings(home=home)
    marker = home / f"bench-{products}.done"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "vo_archive", "demo", "--products",
                        str(products), "--no-serve"], check=True,
                       env=dict(os.environ, VO_ARCHIVE_HOME=str(home)))
        marker.write_text("ok\n")
    return settings
