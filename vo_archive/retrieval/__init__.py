"""Retrieval: runs, objects, ESO Phase 3 releases and streamed bulk downloads.

``params`` turns request parameters into a :class:`~.params.Selection`,
``query`` turns a selection into the visible product versions, ``bundle``
streams them as tar or zip with a checksum manifest, ``phase3`` validates a
run's ESO Phase 3 release, ``service`` ties these together for the routes and
the CLI, ``fetch`` downloads and verifies on the client side.
"""

from __future__ import annotations

from vo_archive.retrieval.routes import bp

__all__ = ["bp"]
