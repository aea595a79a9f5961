"""The gunicorn worker the archive runs under: slow and stalled clients cannot hang it.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its
first byte arrives, and the thread then blocks until the whole request head is
in. A client that trickles its headers (slowloris) or stalls its body holds a
thread for as long as it likes; a few dozen such connections stop the server.
:class:`GuardedThreadWorker` changes four things:

- **The request head is collected without a thread.** Each time the socket is
  readable, a thread takes whatever bytes are there without waiting, keeps them
  with the connection and gives the connection back to the poller until the
  head is complete; only then is it parsed and served. A head not complete
  :data:`HEAD_TIMEOUT` seconds after its first byte gets ``408`` and the
  connection is closed.
- **Reads and writes after the head have an idle timeout** of
  :data:`IDLE_TIMEOUT` seconds (a stalled upload or a client that stops reading
  a download frees its thread), and a body the application did not read is
  drained for at most :data:`DRAIN` seconds.
- **Connections are closed in the worker thread**, not on gunicorn's main
  thread, where the graceful close's linger for a stalled peer would stop
  every other connection.
- **gunicorn's own error pages are text**, starting with the fault name like
  every other error of the archive, instead of HTML.

A reverse proxy in front (nginx, HAProxy) remains the first line of defence on
the internet; this keeps the archive safe without one, on loopback and in tests.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from typing import Any

import gunicorn.util
from gunicorn.http.wsgi import Response

# _DEFER (gthread's marker for a connection handed back to the poller) is
# private to gunicorn and absent from its type stubs
from gunicorn.workers.gthread import _DEFER, ThreadWorker  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

#: Seconds from a request's first byte until its head must be complete.
HEAD_TIMEOUT = 15.0
#: Seconds a read or write of a request body or response may wait for the peer.
IDLE_TIMEOUT = 60.0
#: Seconds spent reading what an application left unread of a request body.
DRAIN = 1.0
#: Seconds a closing connection lingers for the peer to read the last answer.
CLOSE_LINGER = 1.0
#: A head this long without its end is handed to the parser, which refuses it.
MAX_HEAD = 1 << 20
_RECV = 65536


def _head_complete(buf: bytes) -> bool:
    return b"\r\n\r\n" in buf or b"\n\n" in buf or len(buf) >= MAX_HEAD


def write_text_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Write gunicorn's own error answers as ``text/plain`` with the fault name.

    Replaces :func:`gunicorn.util.write_error` (an HTML page) in the server.
    """
    name = "UsageFault" if status_int < 500 else "FatalFault"
    body = f"{name}: {reason}{': ' + mesg if mesg else ''}\n".encode(
        "utf-8", "replace")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1", "replace")
    gunicorn.util.write_nonblock(sock, head + body)


def install_text_errors() -> None:
    """Make gunicorn write text error answers (see :func:`write_text_error`)."""
    gunicorn.util.write_error = write_text_error


_plain_write = Response.write


def _write_with_head(self: Any, data: Any) -> None:
    """Send the response head together with the first piece of the body.

    gunicorn writes the head and the body in two ``send`` calls; on loopback
    each costs the sender the receiver's work too, and a small answer (a cone
    search) is then two segments. One write when the piece fits the
    response's length; anything else goes the usual way.
    """
    if (self.headers_sent or not isinstance(data, bytes) or not data
            or self.chunked or getattr(self, "_omits_body", False)
            or (self.response_length is not None
                and self.sent + len(data) > self.response_length)):
        return _plain_write(self, data)
    head = self.default_headers()
    head.extend(f"{k}: {v}\r\n" for k, v in self.headers)
    self.headers_sent = True
    self.sent += len(data)
    gunicorn.util.write(self.sock, ("".join(head) + "\r\n").encode("latin-1") + data)
    return None


def install_single_writes() -> None:
    """Make gunicorn send a response's head with its body (:func:`_write_with_head`)."""
    Response.write = _write_with_head  # type: ignore[method-assign, assignment]


class GuardedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, safe against slow and stalled clients."""

    def handle(self, conn: Any) -> Any:
        """Collect the request head without blocking, then serve the request."""
        pending = getattr(conn, "head_buf", None)
        if pending is None and conn.parser is not None and \
                conn.parser.unreader.buf.getvalue():
            # bytes of the next request were read ahead already: parse them
            return self._serve(conn)
        buf = pending or b""
        closed = False
        while not _head_complete(buf):
            try:
                chunk = conn.sock.recv(_RECV, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE):
                    log.debug("socket error while reading a request head: %s", exc)
                return self._closed_here(conn, False)
            if not chunk:
                closed = True
                break
            buf += chunk
        if not buf:
            return self._closed_here(conn, False) if closed else \
                self._defer(conn, None)
        if closed or not _head_complete(buf):
            if closed:
                return self._closed_here(conn, False)
            return self._defer(conn, buf)
        conn.head_buf = None
        conn.head_started = None
        conn.sock.setblocking(True)
        conn.init()
        if conn.is_http2:
            return super().handle(conn)
        conn.parser.unreader.unread(buf)
        return self._serve(conn)

    def _defer(self, conn: Any, buf: bytes | None) -> Any:
        now = time.monotonic()
        started = getattr(conn, "head_started", None)
        if buf is None:
            # nothing yet: the poller waits for data (gunicorn's keepalive /
            # pending timeouts close a connection that never sends anything)
            conn.data_ready = False
            return _DEFER
        if started is None:
            conn.head_started = started = now
        if now - started > HEAD_TIMEOUT:
            log.info("closing %s: request head incomplete after %.0f s", conn.client,
                     now - started)
            with contextlib.suppress(OSError):
                write_text_error(conn.sock, 408, "Request Timeout",
                                 f"request head not complete within {HEAD_TIMEOUT:g} s")
            return self._closed_here(conn, False)
        conn.head_buf = buf
        conn.data_ready = False
        return _DEFER

    def _serve(self, conn: Any) -> Any:
        conn.data_ready = True
        return self._closed_here(conn, super().handle(conn))

    @staticmethod
    def _closed_here(conn: Any, result: Any) -> Any:
        """Close a finished connection in this thread, not in the main loop.

        gunicorn closes connections gracefully (lingering up to 2 s for the
        peer) on its main thread, which also accepts and polls every other
        connection: a few stalled peers would freeze it.
        """
        if result is False:
            with contextlib.suppress(OSError):
                gunicorn.util.close_graceful(conn.sock, timeout=CLOSE_LINGER)
            conn.closed_in_thread = True
        return result

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """Drain what the application left of a body for at most :data:`DRAIN`.

        gunicorn drains for up to 5 s before reusing a connection; a peer that
        stalls its body would hold the thread that long.
        """
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN))

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Hand the connection back to the poller, unless already closed."""
        if getattr(conn, "closed_in_thread", False):
            self.nr_conns -= 1
            return
        super().finish_request(conn, fs)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve a parsed request with an idle timeout on the socket."""
        conn.sock.settimeout(IDLE_TIMEOUT)
        try:
            return super().handle_request(req, conn)
        finally:
            if conn.sock.fileno() >= 0:
                conn.sock.settimeout(None)
