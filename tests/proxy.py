"""A fault-injecting TCP proxy for the tests: it forwards bytes between a client and a server
on 127.0.0.1, and on request loses the server's next reply or stops answering altogether.

::

    proxy = FaultyProxy(server_port)
    client = Cache(f"redis://127.0.0.1:{proxy.port}/0")
    proxy.lose_next_reply()      # the next bytes the server sends are dropped, and that
                                 # connection cut: the command ran, its reply never came
    proxy.lose_next_reply(then_black_hole=True)   # and nothing answers after that
    proxy.black_hole()           # from now on: connections accepted, nothing forwarded

:class:`BlackHole` is a port that accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackHole:
    """A listening port that accepts every connection and never sends or reads a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="black-hole", daemon=True).start()

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._held.append(sock)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._held:
                sock.close()


class FaultyProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, with faults on request."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lost = threading.Event()  # set once a reply was lost
        self._lose_next = False
        self._silence_after_loss = False
        self._silent = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def lose_next_reply(self, *, then_black_hole: bool = False) -> None:
        """Drop the next bytes any server connection sends, and cut that connection; with
        ``then_black_hole``, go silent at that moment, as :meth:`black_hole`."""
        with self._lock:
            self._lose_next = True
            self._silence_after_loss = then_black_hole
            self.lost.clear()

    def black_hole(self) -> None:
        """From now on, accept connections but forward nothing, either way, on any of them."""
        with self._lock:
            self._silent = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._sockets.append(client)
                if self._silent:
                    continue  # held open, never answered
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.append(server)
            for source, sink, from_server in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_server), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    if self._silent:
                        continue  # swallowed; the connection stays open and says nothing
                    lose = from_server and self._lose_next
                    if lose:
                        self._lose_next = False
                        self._silent = self._silence_after_loss
                if lose:
                    self.lost.set()
                    break
                sink.sendall(data)
        for sock in (source, sink):  # the other direction's pump ends too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
