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
- **Small bodies are collected the same way**: a request whose body is at most
  :data:`SMALL_BODY` bytes (a form, an ADQL query, a cone search by POST)
  reaches a thread only once the body is in too, so a stalled small body costs
  no thread; head and body must be complete :data:`HEAD_TIMEOUT` seconds after
  the first byte.
- **Larger bodies are read by a bounded number of threads**: at most
  :data:`BODY_READERS` requests per worker read a larger (or chunked, or
  ``Expect: 100-continue``) body at a time; one more gets ``503`` with
  ``Retry-After`` at once. Their body must arrive at :data:`BODY_MIN_RATE`
  bytes per second on average after :data:`BODY_TIMEOUT` seconds of grace
  (the per-request body deadline), else ``408``.
- **Reads and writes after the head have an idle timeout** of
  :data:`IDLE_TIMEOUT` seconds (a client that stops reading a download frees
  its thread), and a body the application did not read is drained for at most
  :data:`DRAIN` seconds.
- **An answer given before the body was read says ``Connection: close``** (a
  401, 403 or 413 to an upload) when what is left of the body is not already
  buffered: the connection is then closed, and a keep-alive client knows to
  open a new one instead of failing on its next request.
- **Connections are closed by a lingering closer**, a thread of its own that
  keeps many half-closed sockets for up to :data:`CLOSE_LINGER` seconds at
  once (so the peer can read the last answer before the close), not on
  gunicorn's main thread, where the linger for a stalled peer would stop every
  other connection, nor in the request's thread, which would be held that
  long by every refused or timed-out stalled client.
- **gunicorn's own error pages are text**, starting with the fault name like
  every other error of the archive, instead of HTML.

A reverse proxy in front (nginx, HAProxy) remains the first line of defence on
the internet; this keeps the archive safe without one, on loopback and in tests.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import socket
import threading
import time
from typing import Any

import gunicorn.util
from gunicorn.http.body import ChunkedReader, LengthReader
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
#: Bodies up to this many bytes are collected before a thread serves them.
SMALL_BODY = 64 << 10
#: Requests per worker that may read a larger body at the same time.
BODY_READERS = 4
#: Seconds of grace a larger body has before :data:`BODY_MIN_RATE` applies.
BODY_TIMEOUT = 30.0
#: Average bytes per second a larger body must arrive at after the grace.
BODY_MIN_RATE = float(64 << 10)
#: A head this long without its end is handed to the parser, which refuses it.
MAX_HEAD = 1 << 20
_RECV = 65536


_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r?$",
                             re.IGNORECASE | re.MULTILINE)
_LARGE_MARKERS = re.compile(rb"^(transfer-encoding|expect)[ \t]*:",
                            re.IGNORECASE | re.MULTILINE)


def _head_end(buf: bytes) -> int:
    """Return the length of the request head in ``buf``, or -1 when incomplete."""
    ends = [i + n for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2))
            if i >= 0]
    if ends:
        return min(ends)
    return len(buf) if len(buf) >= MAX_HEAD else -1


def body_plan(head: bytes) -> tuple[int, bool]:
    """Return how many body bytes to collect first, and whether the body is large.

    A body of known length up to :data:`SMALL_BODY` is collected before the
    request is served; a larger, chunked or ``Expect: 100-continue`` body is
    read by the application in a thread, one of :data:`BODY_READERS`. A head
    whose length cannot be told (repeated or malformed ``Content-Length``) is
    left to gunicorn's parser, which refuses it before reading any body.
    """
    if _LARGE_MARKERS.search(head):
        return 0, True
    lengths = {int(m) for m in _CONTENT_LENGTH.findall(head)}
    if len(lengths) != 1:
        return 0, False
    length = lengths.pop()
    if length > SMALL_BODY:
        return 0, True
    return length, False


def write_text_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Write gunicorn's own error answers as ``text/plain`` with the fault name.

    Replaces :func:`gunicorn.util.write_error` (an HTML page) in the server.
    """
    name = "UsageFault" if status_int < 500 else (
        "TransientFault" if status_int == 503 else "FatalFault")
    body = f"{name}: {reason}{': ' + mesg if mesg else ''}\n".encode(
        "utf-8", "replace")
    retry = "Retry-After: 5\r\n" if status_int == 503 else ""
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n{retry}"
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


def body_unread(req: Any) -> bool:
    """Return whether part of the request's body is neither read nor buffered."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > len(reader.unreader.buf.getvalue())
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return False


_plain_default_headers = Response.default_headers


def _close_if_body_unread(self: Any) -> Any:
    """Announce ``Connection: close`` when the answer leaves a body unread.

    The connection will be closed rather than drained (the body may be large or
    stalled); saying so lets a keep-alive client open a new one for its next
    request instead of failing on this one ("RemoteDisconnected").
    """
    if not self.must_close and body_unread(self.req):
        self.force_close()
    return _plain_default_headers(self)


def install_close_on_unread_body() -> None:
    """Make gunicorn announce the close of a connection whose body was not read."""
    Response.default_headers = _close_if_body_unread  # type: ignore[method-assign]


class _Closer:
    """Close half-closed sockets once the peer has closed or the linger is over.

    RFC 9112 §9.6: after the last answer, shut the write side and read what the
    peer still sends until it closes, so that unread request bytes do not make
    the kernel reset the connection before the answer is read. One thread does
    this for every closing socket of the worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._socks: list[tuple[Any, float]] = []
        self._thread: threading.Thread | None = None

    def close(self, sock: Any) -> None:
        """Shut ``sock``'s write side and close it after the linger."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            with contextlib.suppress(OSError):
                sock.close()
            return
        with self._lock:
            self._socks.append((sock, time.monotonic() + CLOSE_LINGER))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="closer")
                self._thread.start()
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._socks:
                    self._lock.wait()
                socks, self._socks = self._socks, []
            keep = [(sock, until) for sock, until in socks
                    if not self._done(sock, until)]
            with self._lock:
                self._socks.extend(keep)
            if keep:
                time.sleep(0.05)

    @staticmethod
    def _done(sock: Any, until: float) -> bool:
        """Drain ``sock``; close it and say so once the peer closed or time is up."""
        finished = time.monotonic() > until
        try:
            while not finished:
                if not sock.recv(_RECV):
                    finished = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            finished = True
        if finished:
            with contextlib.suppress(OSError):
                sock.close()
        return finished


_CLOSER = _Closer()


def _guard_body(conn: Any) -> None:
    """Hold the request body being read on ``conn`` to its deadline.

    The body has :data:`BODY_TIMEOUT` seconds plus one second for every
    :data:`BODY_MIN_RATE` bytes received; a read past that raises
    ``TimeoutError`` (the application answers 408 and the connection closes).
    """
    conn.body_started = time.monotonic()
    conn.body_received = 0
    unreader = conn.parser.unreader
    if getattr(unreader, "guarded", False):
        return
    read = unreader.chunk

    def chunk(size_hint: int | None = None) -> bytes:
        started = getattr(conn, "body_started", None)
        if started is None:
            return bytes(read(size_hint))
        left = (started + BODY_TIMEOUT + conn.body_received / BODY_MIN_RATE
                - time.monotonic())
        if left <= 0:
            raise TimeoutError("request body not received in time")
        conn.sock.settimeout(min(IDLE_TIMEOUT, left))
        try:
            data = bytes(read(size_hint))
        finally:
            conn.sock.settimeout(IDLE_TIMEOUT)
        conn.body_received += len(data)
        return data

    unreader.chunk = chunk
    unreader.guarded = True


class GuardedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, safe against slow and stalled clients."""

    def init_process(self) -> None:
        """Set up the count of threads reading large bodies, then run."""
        self.body_lock = threading.Lock()
        self.body_readers = 0
        super().init_process()

    def handle(self, conn: Any) -> Any:
        """Collect the request head (and a small body) without blocking, then serve."""
        pending = getattr(conn, "head_buf", None)
        if pending is None and conn.parser is not None and \
                conn.parser.unreader.buf.getvalue():
            # bytes of the next request were read ahead already: parse them
            return self._serve(conn, large=False)
        buf = pending or b""
        closed = False
        while not self._collected(conn, buf):
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
        if closed or not self._collected(conn, buf):
            if closed:
                return self._closed_here(conn, False)
            return self._defer(conn, buf)
        large = getattr(conn, "large_body", False)
        conn.head_buf = None
        conn.head_started = None
        conn.body_need = None
        conn.large_body = False
        conn.sock.setblocking(True)
        conn.init()
        if conn.is_http2:
            return super().handle(conn)
        conn.parser.unreader.unread(buf)
        return self._serve(conn, large)

    @staticmethod
    def _collected(conn: Any, buf: bytes) -> bool:
        """Return whether the head, and a small body, are all in ``buf``."""
        need = getattr(conn, "body_need", None)
        if need is None:
            end = _head_end(buf)
            if end < 0:
                return False
            length, conn.large_body = body_plan(buf[:end])
            conn.body_need = need = end + length
        return len(buf) >= need

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
            log.info("closing %s: request incomplete after %.0f s", conn.client,
                     now - started)
            what = "request head" if getattr(conn, "body_need", None) is None else \
                "request"
            with contextlib.suppress(OSError):
                write_text_error(conn.sock, 408, "Request Timeout",
                                 f"{what} not complete within {HEAD_TIMEOUT:g} s")
            return self._closed_here(conn, False)
        conn.head_buf = buf
        conn.data_ready = False
        return _DEFER

    def _serve(self, conn: Any, large: bool) -> Any:
        conn.data_ready = True
        if not large:
            return self._closed_here(conn, super().handle(conn))
        with self.body_lock:
            admitted = self.body_readers < BODY_READERS
            if admitted:
                self.body_readers += 1
        if not admitted:
            log.info("refusing %s: %d request bodies already being read", conn.client,
                     BODY_READERS)
            with contextlib.suppress(OSError):
                write_text_error(conn.sock, 503, "Service Unavailable",
                                 "too many uploads in progress; retry later")
            return self._closed_here(conn, False)
        _guard_body(conn)
        try:
            return self._closed_here(conn, super().handle(conn))
        finally:
            conn.body_started = None
            with self.body_lock:
                self.body_readers -= 1

    @staticmethod
    def _closed_here(conn: Any, result: Any) -> Any:
        """Hand a finished connection to the lingering closer.

        gunicorn closes connections gracefully (lingering up to 2 s for the
        peer) on its main thread, which also accepts and polls every other
        connection: a few stalled peers would freeze it.
        """
        if result is False:
            _CLOSER.close(conn.sock)
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
