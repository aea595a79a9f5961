"""Content-Encoding gzip for text and VOTable answers, streamed.

A WSGI middleware: when the client accepts gzip (TOPCAT, pyvo through
requests and browsers all do), answers whose type is text, XML (VOTables,
VOSI, UWS, OAI-PMH) or JSON are compressed as they stream, chunk by chunk, so
a large TAP result is never held in memory (DALI 1.1 §4.1 lets services use
HTTP compression). Files (FITS, PNG previews, tar and zip bundles), partial
answers (Range) and answers that already carry a Content-Encoding pass through
untouched, with their Content-Length and sendfile path.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Media types worth compressing (before any ``;`` parameter).
COMPRESSIBLE = re.compile(
    r"(text/.*|application/(x-votable\+xml|xml|json|javascript|openapi\+json"
    r"|problem\+json)|image/svg\+xml)\Z")
#: Bodies shorter than this (when their length is known) are sent as they are.
MIN_SIZE = 512
_ACCEPTS_GZIP = re.compile(r"(^|,)\s*(x-)?gzip\s*(;\s*q\s*=\s*(?P<q>[0-9.]+))?\s*(,|$)",
                           re.IGNORECASE)


def accepts_gzip(header: str) -> bool:
    """Return whether an Accept-Encoding header allows gzip (RFC 9110 §12.5.3)."""
    m = _ACCEPTS_GZIP.search(header or "")
    if m is None:
        return False
    q = m.group("q")
    try:
        return q is None or float(q) > 0
    except ValueError:
        return False


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


class GzipMiddleware:
    """Compress eligible answers of a WSGI application as they stream."""

    def __init__(self, app: WSGIApp, level: int = 6) -> None:
        self.app = app
        self.level = level

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Run the application; compress its answer when it is worth it."""
        wanted = (environ.get("REQUEST_METHOD") != "HEAD"
                  and accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")))
        decided: dict[str, bool] = {}

        def start(status: str, headers: list[tuple[str, str]],
                  exc_info: Any = None) -> Callable[[bytes], Any]:
            if self._type_ok(headers):
                # either representation may be served: caches must key on it
                vary = _header(headers, "vary")
                if vary is None or "accept-encoding" not in vary.lower():
                    headers = [(k, v) for k, v in headers if k.lower() != "vary"]
                    headers.append(("Vary", f"{vary}, Accept-Encoding" if vary
                                    else "Accept-Encoding"))
            compress = wanted and self._eligible(status, headers)
            decided["gzip"] = compress
            if compress:
                headers = [(k, v) for k, v in headers
                           if k.lower() not in ("content-length", "content-md5")]
                headers.append(("Content-Encoding", "gzip"))
                etag = _header(headers, "etag")
                if etag and not etag.startswith("W/"):
                    # another representation: another (weak) validator
                    headers = [(k, v) for k, v in headers if k.lower() != "etag"]
                    headers.append(("ETag", "W/" + etag))
            write: Callable[[bytes], Any] = start_response(status, headers, exc_info)
            return write

        body = self.app(environ, start)
        if not decided.get("gzip"):
            return body
        return _GzipStream(body, self.level)

    @staticmethod
    def _type_ok(headers: list[tuple[str, str]]) -> bool:
        ctype = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
        return bool(COMPRESSIBLE.match(ctype))

    def _eligible(self, status: str, headers: list[tuple[str, str]]) -> bool:
        code = status.split(" ", 1)[0]
        if code in ("204", "206", "304") or code.startswith("1"):
            return False
        if _header(headers, "content-encoding") or _header(headers, "content-range"):
            return False
        length = _header(headers, "content-length")
        if length is not None and length.isdigit() and int(length) < MIN_SIZE:
            return False
        return self._type_ok(headers)


class _GzipStream:
    """An iterable that gzips another as it is read, and closes it."""

    def __init__(self, body: Iterable[bytes], level: int) -> None:
        self.body = body
        self.level = level

    def __iter__(self) -> Iterator[bytes]:
        z = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # 31: gzip framing
        for chunk in self.body:
            out = z.compress(chunk)
            if out:
                yield out
        yield z.flush()

    def close(self) -> None:
        """Close the wrapped body (PEP 3333: its resources end with the answer)."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
