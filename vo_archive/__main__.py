"""``python -m vo_archive``: the same as the ``vo-archive`` command."""

import sys

from vo_archive.cli import main

sys.exit(main())
