"""Cone searches while connections stall in their request bodies.

Opens ``--stalled`` connections (default 60) to a running archive, each sending
a POST head and the first bytes of its body and then nothing: half with small
bodies (2,000 bytes announced, forms), half with large ones (500,000 bytes).
Then times ``--cones`` cone searches (``/scs``) one after the other and prints
their latencies, and how the stalled connections were answered (503 beyond the
readers' bound; 408 or 400 at the body deadline).

    python bench/stalled.py --url http://127.0.0.1:8000 [--stalled 60] [--cones 20]

Before the worker bounded stalled bodies, the default configuration made a
cone search wait 200 s behind 60 of them.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import time
import urllib.parse
from collections import Counter


def stall(host: str, port: int, n: int) -> list[socket.socket]:
    """Open ``n`` connections stalled in their bodies."""
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=30)
        length = 2000 if i % 2 else 500_000
        path = ("/tap/sync", "/scs", "/upload")[i % 3]
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                  "LANG=ADQL&QUERY=SELECT".encode())
        socks.append(s)
    return socks


def main() -> int:
    """Run the measurement and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="a running archive")
    ap.add_argument("--stalled", type=int, default=60)
    ap.add_argument("--cones", type=int, default=20)
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    socks = stall(host, port, args.stalled)
    time.sleep(1.0)
    latencies = []
    try:
        for i in range(args.cones):
            conn = http.client.HTTPConnection(host, port, timeout=300)
            t0 = time.monotonic()
            conn.request("GET", f"/scs?RA={10 + i}&DEC=-20&SR=1")
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.monotonic() - t0)
            conn.close()
            if resp.status != 200:
                print(f"cone {i}: HTTP {resp.status}")
        answers: Counter[str] = Counter()
        for s in socks:
            s.settimeout(0.2)
            try:
                head = s.recv(64)
            except OSError:
                head = b""
            answers[head[9:12].decode() if head else "(waiting)"] += 1
    finally:
        for s in socks:
            s.close()
    ms = sorted(1000 * x for x in latencies)
    print(f"{args.stalled} stalled bodies; {len(ms)} cone searches: median "
          f"{ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")
    print("stalled connections after the cones: "
          + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
