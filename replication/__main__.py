"""``python -m replication``: the ``replicate`` commands without the archive CLI."""

from __future__ import annotations

import sys

from replication.cli import main

sys.exit(main())
