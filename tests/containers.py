"""redis-server and memcached in containers, for machines with a Docker engine and no binaries.

The engine is the one ``$DOCKER_HOST`` names, else the default socket. The images are the official
``redis:7`` and ``memcached:1.6``, pulled when the engine does not have them. A server listens on
127.0.0.1 on a free port: published there, or, on an engine without a bridge network, in the
host's network. Servers that must reach each other at the address the tests use (the nodes of
a Redis Cluster, a master, its replica and their sentinels) always run in the host's network.

Every container carries two labels: :data:`KIND_LABEL` (``redis`` or ``memcached``) and
:data:`OWNER_LABEL` (host, pid, and the pid's start time, which tells a live owner from a new
process that got its pid). A container is removed by its server's ``close()``; failing that, at
the owner's exit, on SIGTERM or SIGHUP (after which the signal takes its course); and, when its
owner died without a word (SIGKILL), by :func:`sweep`, which every process runs on its first
connection to the engine.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import signal
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

REDIS_IMAGE = "redis:7"
MEMCACHED_IMAGE = "memcached:1.6"
DATA_DIR = "/data"  # the working directory of the redis image
KIND_LABEL = "io.distqueue.test-server"
OWNER_LABEL = "io.distqueue.test-server.owner"


class EngineUnavailable(RuntimeError):
    """No Docker engine answers, an image could not be pulled, or a container did not start."""


# -- who owns a container --------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux), "" where /proc does not tell, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the command name in parentheses may hold spaces: count fields after its end
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else ""
    except (OSError, IndexError):
        return ""


def owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


def owner_is_gone(owner: str) -> bool:
    """True only for a process of this host that no longer runs: nobody else's are judged."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    now = _start_time(int(pid_text))
    if now is None:
        return True
    if now and started:
        return now != started
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- the engine ------------------------------------------------------------------------------------

_lock = threading.Lock()
_client: docker.DockerClient | None = None
_publishes: bool | None = None
_owned: dict[str, Container] = {}


def engine() -> docker.DockerClient:
    """The engine, connected once per process (and swept of dead runs' containers then).

    Raises :class:`EngineUnavailable` when none answers.
    """
    global _client
    with _lock:
        if _client is None:
            where = os.environ.get("DOCKER_HOST") or "the default socket"
            try:
                client = docker.from_env(timeout=60)
                client.ping()
            except docker.errors.DockerException as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EngineUnavailable(f"no Docker engine answers at {where}: {reason}") from None
            sweep(client)
            _client = client
        return _client


def engine_answers() -> bool:
    try:
        engine()
    except EngineUnavailable:
        return False
    return True


def can_publish(client: docker.DockerClient) -> bool:
    """Whether the engine can publish ports: it has a bridge network."""
    global _publishes
    if _publishes is None:
        _publishes = bool(client.networks.list(names=["bridge"]))
    return _publishes


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """Pull ``image`` unless the engine has it; a failed pull is one line naming the image."""
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:  # no tag, perhaps a registry's port: "host:5000/name"
        repository, tag = image, "latest"
    try:
        client.images.pull(repository, tag=tag)
    except docker.errors.DockerException as exc:
        explanation = getattr(exc, "explanation", None) or str(exc)
        reason = " ".join(str(explanation).split())
        raise EngineUnavailable(f"could not pull {image}: {reason}") from None


def sweep(client: docker.DockerClient) -> list[str]:
    """Remove the containers of this module whose owner process is gone; returns their ids."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": KIND_LABEL}):
        if owner_is_gone(container.labels.get(OWNER_LABEL, "")):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
                removed.append(container.id)
    return removed


# -- removal at exit and on signals ----------------------------------------------------------------


def remove_owned() -> None:
    """Remove every container this process started and has not removed yet."""
    for container_id, container in list(_owned.items()):
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)
        _owned.pop(container_id, None)


_Handler = Callable[[int, FrameType | None], Any] | int | None
_previous: dict[int, _Handler] = {}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    remove_owned()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    # The default action (terminate), as if this handler had never been there.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup() -> None:
    if _previous or threading.current_thread() is not threading.main_thread():
        return
    atexit.register(remove_owned)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous == signal.SIG_IGN:
            continue
        _previous[signum] = previous
        signal.signal(signum, _on_signal)


# -- servers ---------------------------------------------------------------------------------------


def _answers(port: int, request: bytes, reply: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(reply)
    except OSError:
        return False


def _archive(files: Mapping[str, str]) -> bytes:
    """A tar of ``files`` (name: text), each readable and writable by any user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o666
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ContainerServer:
    """A server in a container on 127.0.0.1:``port``; ``kill()`` then ``start()`` keeps the
    port and whatever the container wrote.

    With ``host_network`` the container runs in the host's network even where the engine could
    publish its port. ``files`` (name: text) are written to :data:`DATA_DIR` in the container
    before it starts, writable by the server, which may rewrite them.
    """

    image: str
    kind: str
    request: bytes  # a command the server answers once it serves
    reply: bytes  # how that answer starts

    def __init__(
        self, port: int, *, host_network: bool = False, files: Mapping[str, str] | None = None
    ) -> None:
        self.port = port
        client = engine()
        ensure_image(client, self.image)
        publish = not host_network and can_publish(client)
        self.host_network = not publish
        try:
            self.container: Container = client.containers.create(
                self.image,
                list(self.command("0.0.0.0" if publish else "127.0.0.1")),
                detach=True,
                labels={KIND_LABEL: self.kind, OWNER_LABEL: owner_of(os.getpid())},
                ports={f"{port}/tcp": ("127.0.0.1", port)} if publish else None,
                network_mode=None if publish else "host",
            )
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(f"could not create a {self.image} container: {exc}") from None
        _owned[self.container.id] = self.container
        _install_cleanup()
        try:
            if files and not self.container.put_archive(DATA_DIR, _archive(files)):
                raise EngineUnavailable(f"could not write {', '.join(files)} into {self.image}")
            self.start()
        except BaseException:
            self.close()
            raise

    def command(self, bind: str) -> Sequence[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start the container and return once the server answers."""
        self.container.start()
        deadline = time.monotonic() + timeout
        while not _answers(self.port, self.request, self.reply):
            self.container.reload()
            if self.container.status not in ("created", "running"):
                log = self.container.logs(tail=5).decode(errors="replace").strip()
                raise EngineUnavailable(
                    f"{self.image} container exited ({self.container.status}): {log}"
                )
            if time.monotonic() > deadline:
                where = " in the engine's host network" if self.host_network else ""
                raise EngineUnavailable(
                    f"{self.image} did not answer on 127.0.0.1:{self.port}{where} within "
                    f"{timeout} s" + (" (is that network this machine's?)" if where else "")
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        self.container.reload()
        return bool(self.container.status == "running")

    def stop(self) -> None:
        self.container.stop(timeout=10)

    def kill(self) -> None:
        self.container.reload()
        if self.container.status == "running":
            self.container.kill()
            self.container.wait(timeout=10)

    def close(self) -> None:
        """Remove the container for good."""
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)
        _owned.pop(self.container.id, None)


class RedisContainer(ContainerServer):
    """A redis-server; ``extra`` arguments go at the end of its command line."""

    image = REDIS_IMAGE
    kind = "redis"
    request = b"PING\r\n"
    reply = b"+PONG"

    def __init__(
        self,
        port: int,
        *,
        appendonly: bool = False,
        extra: Sequence[str] = (),
        host_network: bool = False,
    ) -> None:
        self.appendonly = appendonly
        self.extra = list(extra)
        super().__init__(port, host_network=host_network)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, bind: str) -> Sequence[str]:
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", bind,
            "--protected-mode", "no" if bind != "127.0.0.1" else "yes",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--hz", "100",
            "--loglevel", "warning",
            *self.extra,
        ]  # fmt: skip


class SentinelContainer(ContainerServer):
    """A Redis Sentinel in the host's network, on ``config`` (the lines of its sentinel.conf,
    which it rewrites as it learns), given its own ``port`` and ``bind`` lines here."""

    image = REDIS_IMAGE
    kind = "redis-sentinel"
    request = b"PING\r\n"
    reply = b"+PONG"
    CONFIG = "sentinel.conf"

    def __init__(self, port: int, config: Sequence[str]) -> None:
        text = "".join(f"{line}\n" for line in [f"port {port}", "bind 127.0.0.1", *config])
        super().__init__(port, host_network=True, files={self.CONFIG: text})

    def command(self, bind: str) -> Sequence[str]:
        return ["redis-server", f"{DATA_DIR}/{self.CONFIG}", "--sentinel"]


class MemcachedContainer(ContainerServer):
    image = MEMCACHED_IMAGE
    kind = "memcached"
    request = b"version\r\n"
    reply = b"VERSION "

    def __init__(self, port: int, *, item_size_max: str | None = None) -> None:
        self.item_size_max = item_size_max
        super().__init__(port)

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, bind: str) -> Sequence[str]:
        args = ["memcached", "-l", bind, "-p", str(self.port), "-U", "0", "-m", "64"]
        if self.item_size_max is not None:
            args += ["-I", self.item_size_max]
        return args
