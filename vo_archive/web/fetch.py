"""Server-side HTTP fetches that cannot be turned against the archive's own network.

A URL a caller gives (TAP ``UPLOAD=t,http://...``) is fetched by the server,
from inside its network: without care a caller could read the cloud metadata
service (169.254.169.254), the database's neighbours or the archive's own
loopback services, or scan ports through the error messages (server-side
request forgery). :func:`fetch` therefore:

- resolves the host name itself and refuses the fetch when any of its
  addresses is loopback, private, link-local, multicast, reserved, unspecified
  or otherwise not global (IPv4 and IPv6; IPv4-mapped and IPv4-compatible IPv6
  addresses are judged by their IPv4 address), unless an allow-listed network
  (``[limits] fetch_allow``) holds it;
- connects to the address it checked (no second name lookup, so no DNS
  rebinding between check and connection), sending the name in ``Host`` and
  as TLS server name;
- follows redirects itself, at most :data:`MAX_REDIRECTS`, checking each new
  address the same way;
- bounds the time (per read and overall) and the size of the answer;
- says only :data:`NOT_ALLOWED` for a refused address and :data:`FAILED` for
  any other failure, whatever the port's state, so that its answers tell an
  open port from a closed one no better than the time they take.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from vo_archive.config import ConfigError, Settings

log = logging.getLogger(__name__)

#: The message of a refused address (whatever the port's state).
NOT_ALLOWED = "address not allowed"
#: The message of any other failure (name, connection, status, protocol, time).
FAILED = "could not fetch"
#: Redirects followed at most.
MAX_REDIRECTS = 5
#: Seconds one connection or read may wait.
READ_TIMEOUT = 30.0
#: Seconds a whole fetch may take, redirects included.
TOTAL_TIMEOUT = 120.0
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 1 << 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A fetch refused or failed; ``str()`` is safe to show to the caller."""


class TooLarge(FetchError):
    """The answer is larger than the limit."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Which addresses a fetch may reach besides the global ones."""

    allow: tuple[Network, ...] = ()


def parse_allow(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse allow-listed networks (``"127.0.0.0/8"``, ``"::1"``, ...).

    Raises
    ------
    ConfigError
        If a value is not an IP network.
    """
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"[limits] fetch_allow: {value!r} is not an IP network"
                              " (e.g. \"127.0.0.0/8\")") from None
    return tuple(nets)


def policy(settings: Settings) -> FetchPolicy:
    """Return the fetch policy of the configuration (``[limits] fetch_allow``).

    Raises
    ------
    ConfigError
        If ``fetch_allow`` is not a list of IP networks.
    """
    values = settings.extra.get("limits", {}).get("fetch_allow", [])
    if isinstance(values, str) or not isinstance(values, list):
        raise ConfigError("[limits] fetch_allow must be a list of IP networks")
    return FetchPolicy(parse_allow(values))


def _plain(address: Address) -> Address:
    """Return the IPv4 address inside an IPv4-mapped or -compatible IPv6 one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if int(address) >> 32 == 0 and int(address) > 1:
            # ::a.b.c.d (deprecated IPv4-compatible), which some stacks route
            return ipaddress.IPv4Address(int(address))
    return address


def allowed(address: str, rule: FetchPolicy) -> bool:
    """Return whether ``address`` (a literal IP address) may be fetched from."""
    raw = ipaddress.ip_address(address.split("%", 1)[0])
    ip = _plain(raw)
    if any(ip in net or raw in net for net in rule.allow):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        # 6to4 and Teredo addresses carry an IPv4 address a relay would reach
        embedded = [ip.sixtofour, *(ip.teredo or ())]
        if any(e is not None and not allowed(str(e), rule) for e in embedded):
            return False
    return ip.is_global and not (ip.is_loopback or ip.is_private or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved
                                 or ip.is_unspecified)


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    """Return (family, address) pairs of ``host``, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        log.info("fetch: cannot resolve %r: %s", host, exc)
        raise FetchError(FAILED) from None
    out: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        pair = (int(family), str(sockaddr[0]))
        if pair not in out:
            out.append(pair)
    return out


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        """Connect to the checked address, not to a new lookup of the name."""
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    """An HTTPS connection to an address checked beforehand, TLS for the name."""

    default_port = 443

    def connect(self) -> None:
        """Connect to the checked address and start TLS for the host name."""
        super().connect()
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)


def _open(url: str, rule: FetchPolicy, deadline: float) -> tuple[Any, str | None]:
    """GET ``url`` once; return the response, and the redirect target if any."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(FAILED)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(FAILED) from None
    host = parts.hostname
    candidates = _addresses(host, port)
    if not candidates or not all(allowed(a, rule) for _, a in candidates):
        # refused before any connection, whatever the port's state
        log.info("fetch: %s refused (%s)", url, ", ".join(a for _, a in candidates))
        raise FetchError(NOT_ALLOWED)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    for _family, address in candidates:
        timeout = min(READ_TIMEOUT, max(0.1, deadline - time.monotonic()))
        conn = cls(host, port, address, timeout)
        try:
            conn.request("GET", path, headers={
                "User-Agent": "vo-archive (TAP upload)", "Accept": "*/*",
                "Accept-Encoding": "identity"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            log.info("fetch: %s at %s failed: %s", url, address, exc)
            continue
        if resp.status in _REDIRECTS:
            target = resp.getheader("Location")
            conn.close()
            if not target:
                raise FetchError(FAILED)
            return None, urljoin(url, target)
        return resp, None
    raise FetchError(FAILED)


def fetch(url: str, rule: FetchPolicy, limit: int) -> bytes:
    """Return the body of ``url``, refusing addresses the policy does not allow.

    Parameters
    ----------
    url
        An http(s) URL.
    rule
        The allow-listed networks (besides global addresses).
    limit
        Largest body accepted, in bytes.

    Raises
    ------
    FetchError
        :data:`NOT_ALLOWED` when an address (of the URL or a redirect) is refused,
        :data:`FAILED` for any other failure; :class:`TooLarge` over ``limit``.
    """
    deadline = time.monotonic() + TOTAL_TIMEOUT
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        resp, target = _open(current, rule, deadline)
        if target is not None:
            current = target
            continue
        try:
            if resp.status != 200:
                log.info("fetch: %s answered HTTP %s", current, resp.status)
                raise FetchError(FAILED)
            return _read(resp, limit, deadline)
        finally:
            resp.close()
    log.info("fetch: %s redirected more than %d times", url, MAX_REDIRECTS)
    raise FetchError(FAILED)


def _read(resp: Any, limit: int, deadline: float) -> bytes:
    data = bytearray()
    try:
        while chunk := resp.read1(_CHUNK):
            data += chunk
            if len(data) > limit:
                raise TooLarge(f"larger than {limit} bytes")
            if time.monotonic() > deadline:
                log.info("fetch: answer not complete within %.0f s", TOTAL_TIMEOUT)
                raise FetchError(FAILED)
    except (OSError, http.client.HTTPException) as exc:
        log.info("fetch: reading the answer failed: %s", exc)
        raise FetchError(FAILED) from None
    return bytes(data)

