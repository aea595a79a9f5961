"""PESSTO archive: storage, ingest, retrieval and VO services for PESSTO products."""

__version__ = "0.1.0"
