"""Run the replicators of several streams in one process, one thread each."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from replication.applier import StreamReplicator
from replication.config import StreamConfig
from replication.db import Watchdog

log = logging.getLogger(__name__)


def run_streams(
    streams: list[StreamConfig], stop: threading.Event | None = None
) -> None:
    """Replicate the given streams until SIGTERM/SIGINT or ``stop`` is set.

    Each stream runs in its own thread, so a halted or disconnected stream
    does not hold up the others.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the current batch", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    watchdog = Watchdog(min(s.io_timeout for s in streams))
    threads = [
        threading.Thread(target=StreamReplicator(s, stop, watchdog).run,
                         name=f"repl-{s.name}", daemon=True)
        for s in streams
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.5)
