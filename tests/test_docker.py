"""Servers in containers: the behavioural suite on them, a Redis Cluster and a Sentinel group of
them, and no container left behind.

These need a Docker engine ($DOCKER_HOST or the default socket) that has, or can pull, the
images ``redis:7`` and ``memcached:1.6``. ``eval "$(local-docker/engine start)"`` starts one of
its own and builds those images out of the local binaries. Without an engine the tests skip,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cluster
import containers
import docker
import docker.errors
import pytest
import redis
import servers
from cluster import Cluster, ContainerLauncher, ContainerNode, Node, ProcessLauncher
from containers import (
    KIND_LABEL,
    MEMCACHED_IMAGE,
    OWNER_LABEL,
    REDIS_IMAGE,
    EngineUnavailable,
    MemcachedContainer,
    RedisContainer,
)
from servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent

# A process of its own that starts one container of each kind, prints their ids, and waits.
OWNER_SCRIPT = """
import sys
sys.path.insert(0, "tests")
from containers import MemcachedContainer, RedisContainer
from servers import free_port
started = [RedisContainer(free_port()), MemcachedContainer(free_port())]
print(" ".join(server.container.id for server in started), flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    try:
        return containers.engine()
    except EngineUnavailable as exc:
        servers.unavailable(f'{exc} (eval "$(local-docker/engine start)" starts one)')


def exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


@pytest.fixture
def owner() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A process that owns two running containers, and their ids."""
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the owner process exited with {process.wait(30)} before starting containers"
    yield process, line.split()
    if process.poll() is None:
        process.kill()
        process.wait(30)


def run_on_containers(engine: docker.DockerClient, *pytest_args: str) -> tuple[str, list[str]]:
    """Run pytest on ``pytest_args`` in a process of its own, every server it starts in a
    container and ``CI=true`` (a server that cannot be had fails its tests); returns the run's
    output and the kinds of the containers it created, once it passed and removed them all."""
    since = int(time.time()) - 1
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *pytest_args],
        cwd=ROOT,
        env={**os.environ, servers.SERVERS_VARIABLE: "docker", "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]

    # What the engine saw of that run's containers: every one removed.
    events = engine.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"type": "container", "label": KIND_LABEL},
        decode=True,
    )
    created: dict[str, str] = {}
    destroyed: set[str] = set()
    for event in events:
        attributes: dict[str, Any] = event["Actor"]["Attributes"]
        if f":{run.pid}:" not in attributes.get(OWNER_LABEL, ""):
            continue
        if event["Action"] == "create":
            kind = attributes[KIND_LABEL]
            assert attributes["image"] == (MEMCACHED_IMAGE if kind == "memcached" else REDIS_IMAGE)
            created[event["Actor"]["ID"]] = kind
        elif event["Action"] == "destroy":
            destroyed.add(event["Actor"]["ID"])
    assert set(created) == destroyed, output[-3000:]
    return output, sorted(created.values())


def summary(output: str) -> str:
    """The last line of a pytest run: how many tests passed, skipped, failed."""
    return output.strip().splitlines()[-1]


def test_the_behavioural_suite_passes_on_containers(engine: docker.DockerClient) -> None:
    output, kinds = run_on_containers(
        engine,
        "tests/test_semantics.py", "tests/test_cache_memcached.py",
        "-k", "(redis and not fakeredis) or memcached",
    )  # fmt: skip
    assert set(kinds) == {"redis", "memcached"}, output[-3000:]


CLUSTER_TESTS = [
    "test_queues_spread_over_the_masters_each_queue_on_one_slot",
    "test_the_executor_and_a_worker_run_tasks_on_a_cluster",
    "test_calls_during_a_slot_migration_wait_for_it_and_lose_nothing",
    "test_a_blocked_get_carries_on_after_its_master_fails_over_and_it_rejoins",
]


def test_the_cluster_tests_pass_on_a_cluster_of_containers(engine: docker.DockerClient) -> None:
    # Queues spread over the masters' slots, a slot moved between containers, and a master's
    # container killed: its replica takes over, and the old one rejoins as a replica.
    output, kinds = run_on_containers(
        engine, *(f"tests/test_cluster.py::{name}" for name in CLUSTER_TESTS)
    )
    assert summary(output).startswith(f"{len(CLUSTER_TESTS)} passed in "), output[-3000:]
    assert kinds == ["redis"] * 6  # three masters, one replica each


SENTINEL_TESTS = [
    "test_a_queue_through_the_sentinels_is_the_masters_queue",
    "test_nothing_acknowledged_is_lost_when_the_master_dies_mid_run",
]


def test_the_sentinel_tests_pass_on_containers(engine: docker.DockerClient) -> None:
    # Producers and consumers through the sentinels while the master's container is killed:
    # they follow the replica the sentinels promote, and nothing acknowledged is lost.
    output, kinds = run_on_containers(
        engine, *(f"tests/test_sentinel.py::{name}" for name in SENTINEL_TESTS)
    )
    assert summary(output).startswith(f"{len(SENTINEL_TESTS)} passed in "), output[-3000:]
    assert kinds == ["redis", "redis", "redis-sentinel", "redis-sentinel", "redis-sentinel"]


def test_a_cluster_of_containers_that_fails_half_way_removes_what_it_started(
    engine: docker.DockerClient,
) -> None:
    class ThirdNodeFails(ContainerLauncher):
        def __init__(self) -> None:
            self.started: list[ContainerNode] = []

        def server(self, name: str, extra: Sequence[str]) -> Node:
            if len(self.started) == 2:
                raise servers.ServerUnavailable("no third node")
            node = super().server(name, extra)
            assert isinstance(node, ContainerNode)
            self.started.append(node)
            return node

    launcher = ThirdNodeFails()
    with pytest.raises(servers.ServerUnavailable, match="no third node"):
        Cluster(launcher)
    ids = [node.server.container.id for node in launcher.started]
    assert len(ids) == 2
    assert [container_id for container_id in ids if exists(engine, container_id)] == []


def test_a_killed_redis_container_comes_back_on_its_port_with_its_data(
    engine: docker.DockerClient,
) -> None:
    server = RedisContainer(free_port(), appendonly=True)
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        client.set("kept", "through a kill")
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert client.get("kept") == b"through a kill"
    finally:
        client.close()
        server.close()
    assert not exists(engine, server.container.id)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_an_interrupted_owner_removes_its_containers(
    engine: docker.DockerClient, owner: tuple[subprocess.Popen[str], list[str]], signum: int
) -> None:
    process, ids = owner
    assert all(exists(engine, container_id) for container_id in ids)
    process.send_signal(signum)
    assert process.wait(60) == -signum  # the signal still ends the process as it would have
    assert [container_id for container_id in ids if exists(engine, container_id)] == []


def test_the_containers_of_a_killed_owner_are_swept_by_the_next_run(
    engine: docker.DockerClient, owner: tuple[subprocess.Popen[str], list[str]]
) -> None:
    process, ids = owner
    mine = MemcachedContainer(free_port())  # owned by this live process: not to be swept
    try:
        process.kill()
        process.wait(30)
        assert all(exists(engine, container_id) for container_id in ids)
        # A new run sweeps when it first connects to the engine.
        subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, 'tests'); "
             "import containers; containers.engine()"],
            cwd=ROOT,
            check=True,
            timeout=120,
        )  # fmt: skip
        assert [container_id for container_id in ids if exists(engine, container_id)] == []
        assert exists(engine, mine.container.id)
    finally:
        mine.close()


def test_a_failed_pull_says_so_in_one_line(engine: docker.DockerClient) -> None:
    image = "distqueue-absent.invalid/none:0"
    with pytest.raises(EngineUnavailable) as raised:
        containers.ensure_image(engine, image)
    message = str(raised.value)
    assert message.startswith(f"could not pull {image}: "), message
    assert "\n" not in message


def test_the_local_binary_is_used_when_present_and_containers_when_not(
    engine: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers.require_binary("redis-server")
    monkeypatch.delenv(servers.SERVERS_VARIABLE, raising=False)
    local = servers.start_redis(tmp_path)
    local.close()
    assert isinstance(local, RedisServer)
    assert isinstance(cluster.launcher(tmp_path), ProcessLauncher)  # for Cluster, Sentinel

    monkeypatch.setattr(servers, "find_binary", lambda name: None)
    contained = servers.start_redis(tmp_path)
    contained.close()
    assert isinstance(contained, RedisContainer)
    assert isinstance(cluster.launcher(tmp_path), ContainerLauncher)

    monkeypatch.setenv(servers.SERVERS_VARIABLE, "binaries")
    with pytest.raises(servers.ServerUnavailable, match="redis-server is not installed"):
        servers.start_redis(tmp_path)
    with pytest.raises(servers.ServerUnavailable, match="redis-server is not installed"):
        cluster.launcher(tmp_path)


def test_the_demo_runs_on_a_redis_container_that_is_removed_afterwards(
    engine: docker.DockerClient,
) -> None:
    demo = subprocess.run(
        [
            sys.executable, "tests/with_redis.py",
            sys.executable, "examples/producer_consumer.py", "--url", "{url}", "--items", "2000",
        ],
        cwd=ROOT,
        env={**os.environ, servers.SERVERS_VARIABLE: "docker"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    first = demo.stdout.splitlines()[0]
    assert first.startswith(f"redis-server ({REDIS_IMAGE} container "), demo.stdout
    assert "every item consumed exactly once" in demo.stdout
    short_id = first.split("container ")[1].split(")")[0]
    assert engine.containers.list(all=True, filters={"id": short_id}) == []
