"""Fixtures: real servers started here, and a queue factory parametrized over every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import Records, Workers
from servers import (
    RedisServer,
    ServerUnavailable,
    start_memcached,
    start_redis,
)
from servers import unavailable as server_unavailable

import distqueue


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One redis-server for the session, on a free port of 127.0.0.1 (binary or container)."""
    try:
        server = start_redis(tmp_path_factory.mktemp("redis"))
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster for the session (3 masters, 1 replica each), started by the first test
    that needs it (processes or containers)."""
    from cluster import Cluster, launcher

    try:
        cluster = Cluster(launcher(tmp_path_factory.mktemp("cluster")))
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_url(redis_cluster: Any) -> str:
    """The session cluster's URL, once every node runs and agrees (a test before may have
    killed one)."""
    redis_cluster.wait_healthy()
    return str(redis_cluster.url)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A master, a replica and three sentinels for the session, started by the first test that
    needs them (processes or containers)."""
    from cluster import SentinelGroup, launcher

    try:
        group = SentinelGroup(launcher(tmp_path_factory.mktemp("sentinel")))
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
    yield group
    group.close()


@pytest.fixture
def sentinel_url(redis_sentinel: Any) -> str:
    """The sentinels' URL, once both servers run and the sentinels agree."""
    redis_sentinel.wait_healthy()
    return str(redis_sentinel.url)


BACKENDS = ["memory", "fakeredis", "redis", "cluster"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_queue(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Build queues of any class on the backend under test; closes them afterwards.

    ``make_queue(cls, maxsize, name=...)``: the same name gives two handles on one queue, as two
    processes would have.
    """
    made: list[Any] = []
    fake_server: Any = None
    url: str | None = None
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
    elif backend == "cluster":
        url = request.getfixturevalue("cluster_url")
    elif backend == "memory":
        url = "memory://"
    else:
        import fakeredis

        fake_server = fakeredis.FakeServer()

    def make(cls: Any = distqueue.Queue, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        name = name or f"test-{uuid.uuid4().hex}"
        if fake_server is not None:
            import fakeredis

            client = fakeredis.FakeRedis(server=fake_server)
            q = cls(*args, name=name, client=client, **kwargs)
        else:
            q = cls(*args, url=url, name=name, **kwargs)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


# -- memcached and the cache layer ---------------------------------------------------------------


def memcached_servers() -> Iterator[tuple[Any, Any]]:
    """Two memcached servers on free ports of 127.0.0.1 (binaries or containers), closed after."""
    started: list[Any] = []
    try:
        for _ in range(2):
            started.append(start_memcached())
    except ServerUnavailable as exc:
        for server in started:
            server.close()
        server_unavailable(str(exc))
    try:
        yield (started[0], started[1])
    finally:
        for server in started:
            server.close()


@pytest.fixture(scope="session")
def memcached_pair() -> Iterator[tuple[Any, Any]]:
    """Two memcached servers for the session, on free ports of 127.0.0.1."""
    yield from memcached_servers()


@pytest.fixture
def memcached_url(memcached_pair: tuple[Any, Any]) -> str:
    """``memcached://`` URL listing both session servers."""
    return "memcached://" + ",".join(server.address for server in memcached_pair)


@pytest.fixture
def own_memcached_pair() -> Iterator[tuple[Any, Any]]:
    """Two memcached servers of this test's own, which the test may kill and restart."""
    yield from memcached_servers()


CACHE_BACKENDS = ["memory", "redis", "memcached", "cluster", "sentinel"]


@pytest.fixture(params=CACHE_BACKENDS)
def cache_url(request: pytest.FixtureRequest) -> str:
    """A URL for the cache layer on each backend: memory, a real redis-server, two real
    memcached servers, a Redis Cluster (3 masters, 1 replica each) and a master found through
    three sentinels."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    if request.param == "sentinel":
        return str(request.getfixturevalue("sentinel_url"))
    return str(request.getfixturevalue("memcached_url"))


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[Workers]:
    """Worker processes started by the test, stopped (or killed) afterwards."""
    started = Workers(tmp_path, redis_url)
    yield started
    started.close()


@pytest.fixture
def records(workers: Workers) -> Iterator[Records]:
    """What the workers' recording functions wrote."""
    found = Records(workers.record_url, workers.record_key)
    yield found
    found.close()


# -- asyncio queues --------------------------------------------------------------------------

AIO_BACKENDS = ["memory", "redis", "cluster"]


class AsyncQueues:
    """Builds :mod:`distqueue.aio` queues on one backend for a test that runs its body with
    :meth:`run` (one event loop), and closes them in that loop afterwards."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.made: list[Any] = []

    def __call__(self, cls: Any = None, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        import distqueue.aio

        cls = cls or distqueue.aio.Queue
        q = cls(*args, url=self.url, name=name or f"test-{uuid.uuid4().hex}", **kwargs)
        self.made.append(q)
        return q

    def sync(self, cls: Any = None, *args: Any, name: str, **kwargs: Any) -> Any:
        """A blocking queue on the same backend and name."""
        cls = cls or distqueue.Queue
        q = cls(*args, url=self.url, name=name, **kwargs)
        self.made.append(q)
        return q

    def run(self, body: Callable[[], Any]) -> Any:
        import asyncio

        async def main() -> Any:
            try:
                return await body()
            finally:
                for q in self.made:
                    if hasattr(q, "aclose"):
                        await q.aclose()
                    else:
                        q.close()
                self.made.clear()

        return asyncio.run(main())


@pytest.fixture(params=AIO_BACKENDS)
def aqueues(request: pytest.FixtureRequest) -> AsyncQueues:
    """:class:`AsyncQueues` on each backend: memory, a real redis-server, a Redis Cluster."""
    if request.param == "redis":
        return AsyncQueues("redis", request.getfixturevalue("redis_url"))
    if request.param == "cluster":
        return AsyncQueues("cluster", request.getfixturevalue("cluster_url"))
    return AsyncQueues("memory", "memory://")
