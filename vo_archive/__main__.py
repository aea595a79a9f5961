"""``python -m vo_archive``: the same as the ``vo-archive`` command."""

import sys

from vo_archive.cli import main

# multiprocessing's fork server imports this module as __mp_main__ in every
# worker it starts: only the real main runs the command line.
if __name__ == "__main__":
    sys.exit(main())
