"""A TCP proxy on 127.0.0.1 that dies mid-transfer: a store that goes away during a push, while the server
behind it (moto, whose state lives in memory) keeps what arrived. Threads, bounded by the test's own lifetime."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class FaultProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream; after `die_after` bytes sent upstream (all connections
    together) it resets every connection and stops listening, as a crashed server would."""

    def __init__(self, upstream: int, die_after: int | None = None, port: int = 0):
        self.upstream, self.die_after, self.sent = upstream, die_after, 0
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.dead = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted and self.die_after is not None:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent >= self.die_after
                    if over:
                        self.stop()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Reset every connection (RST, not a clean close) and stop listening."""
        self.dead.set()
        self.server.close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.close()
                except OSError:
                    pass
