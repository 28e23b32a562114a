"""A TCP proxy that injects network faults between a client and a server on 127.0.0.1.

Modes, set at any time and applied to the next bytes the server sends (a marker is bytes to find
in a reply, or a compiled pattern):

* ``drop_reply(marker)``: the first server reply containing ``marker`` (any reply when
  ``None``) is swallowed and its connection cut, as when a network fails right after the
  server answered. The server has done the work; the client never hears of it. With
  ``then_black_hole``, the proxy goes silent at that moment, as ``black_hole()``.
* ``cut_mid_reply(marker)``: the same, but the first half of that reply gets through.
* ``delay_reply(seconds, marker)``: the first reply containing ``marker`` is held back that
  long (longer than the client's socket timeout: the client gives up on a call the server has
  done, as with a server that stalls).
* ``black_hole()``: new connections are accepted and never answered; on connections already
  open, requests still reach the server but its replies are swallowed.

``drops`` counts the replies dropped, cut or delayed (``lost`` is set at the first), so a test
can check that its fault happened. :class:`BlackHole` is a port that accepts connections and
never answers at all.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

Marker = bytes | re.Pattern[bytes] | None


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


def _matches(marker: Marker, data: bytes) -> bool:
    if marker is None:
        return True
    if isinstance(marker, bytes):
        return marker in data
    return marker.search(data) is not None


class FaultyProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._marker: Marker = None
        self._mode = "pass"
        self._delay = 0.0
        self._swallow = False
        self._silence_after = False
        self.drops = 0
        self.lost = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="faulty-proxy", daemon=True).start()

    def url(self, query: str = "") -> str:
        return f"redis://127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    # -- modes ------------------------------------------------------------------------------

    def drop_reply(self, marker: Marker = None, *, then_black_hole: bool = False) -> None:
        with self._lock:
            self._mode, self._marker, self._silence_after = "drop", marker, then_black_hole

    def cut_mid_reply(self, marker: Marker = None) -> None:
        with self._lock:
            self._mode, self._marker = "cut", marker

    def delay_reply(self, seconds: float, marker: Marker = None) -> None:
        with self._lock:
            self._mode, self._marker, self._delay = "delay", marker, seconds

    def black_hole(self) -> None:
        with self._lock:
            self._swallow = True

    def heal(self) -> None:
        with self._lock:
            self._mode, self._marker, self._delay, self._swallow = "pass", None, 0.0, False

    # -- plumbing -----------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._sockets.append(client)
                swallow = self._swallow
            if swallow:
                continue  # accepted, never answered
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is down: the client sees its connection close
                client.close()
                continue
            with self._lock:
                self._sockets.append(server)
            for source, sink, from_server in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_server), daemon=True
                ).start()

    def _fault_for(self, data: bytes) -> str:
        with self._lock:
            marker = self._marker
            if self._mode == "pass" or not _matches(marker, data):
                return "pass"
            mode = self._mode
            self._mode, self._marker = "pass", None
            self._swallow = self._swallow or self._silence_after
            self.drops += 1
            self.lost.set()
            return mode

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    swallow, delay = self._swallow, self._delay
                if swallow and from_server:
                    continue  # requests still reach the server; its replies never come back
                if from_server:
                    fault = self._fault_for(data)
                    if fault == "delay":
                        time.sleep(delay)
                    if fault == "drop":
                        break
                    if fault == "cut":
                        sink.sendall(data[: max(1, len(data) // 2)])
                        break
                sink.sendall(data)
        for sock in (source, sink):  # the other direction's pump ends too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
