"""UWS 1.1: durable asynchronous jobs stored in PostgreSQL, run by worker processes."""
