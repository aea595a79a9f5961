"""Trigger-based master/slave replication on PgQ (issue 6).

Each *stream* ships the changes of a set of tables from one master database to
one slave database.  Capture is a row trigger queuing PgQ events in the
writer's transaction; the replicator cuts batches with PgQ ticks (transaction
snapshots), applies each batch on the slave in one transaction together with
the position marker, and only then finishes the batch on the master.  See
``replication/README.md`` for the design and the operator's guide.
"""

from __future__ import annotations

from replication.config import ReplicationConfig, StreamConfig, load_config

__all__ = ["ReplicationConfig", "StreamConfig", "load_config"]
