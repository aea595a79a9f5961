"""A TCP proxy for fault injection: pass, cut, black-hole, or cut at COMMIT."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TCPProxy:
    """Forward 127.0.0.1:<port> to a target port, under the test's control.

    Modes: ``pass`` forwards; ``blackhole`` keeps every socket open but moves
    no bytes (a half-open WAN link); `cut` closes all current links.  With
    `arm_commit_cut` the next client ``COMMIT`` message is forwarded to the
    server and then the link is black-holed, so the client never learns
    whether its commit happened.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.mode = "pass"
        self.commit_armed = False
        self.commit_cuts = 0
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.append((client, server))
            threading.Thread(
                target=self._pump, args=(client, server), daemon=True
            ).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        held = False
        try:
            while not self._closed:
                r, _, _ = select.select([client, server], [], [], 0.1)
                if self.mode == "blackhole" or held:
                    continue
                for src in r:
                    data = src.recv(65536)
                    if not data:
                        return
                    dst = server if src is client else client
                    dst.sendall(data)
                    if (src is client and self.commit_armed and data[:1] == b"Q"
                            and b"COMMIT" in data):
                        self.commit_armed = False
                        self.commit_cuts += 1
                        held = True  # the server commits; its answer never arrives
        except (OSError, ValueError):
            pass  # a socket closed under us by cut()
        finally:
            if not held and self.mode != "blackhole":
                self._drop(client, server)

    def _drop(self, client: socket.socket, server: socket.socket) -> None:
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.close()
        with self._lock, contextlib.suppress(ValueError):
            self._links.remove((client, server))

    def cut(self) -> None:
        """Close every current link (both ends see a reset/EOF)."""
        with self._lock:
            links = list(self._links)
        for client, server in links:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._drop(client, server)

    def blackhole(self) -> None:
        """Stop moving bytes on all links, old and new, without closing them."""
        self.mode = "blackhole"

    def heal(self) -> None:
        """Forward again; black-holed links are closed so that clients reconnect."""
        self.cut()
        self.mode = "pass"

    def arm_commit_cut(self) -> None:
        """Black-hole the link right after forwarding the next COMMIT."""
        self.commit_armed = True

    def close(self) -> None:
        """Stop the proxy and close all links."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()
