"""Command groups of the ``vo-archive`` command line."""
