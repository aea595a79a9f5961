"""The archive's pages for astronomers: object pages, spectrum viewer, search, upload.

``viewer`` builds the Bokeh spectrum viewer, ``objectpage`` gathers what an
object page shows, ``search`` reads the search box, ``routes`` serves BokehJS,
the search, the upload page and spectra as CSV.
"""

from __future__ import annotations

from vo_archive.web.pages.routes import bp

__all__ = ["bp"]
