"""Servers in containers: the behavioural suite on them, and no container left behind.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containers
import docker
import docker.errors
import pytest
import redis
import servers
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


def test_the_behavioural_suite_passes_on_containers(engine: docker.DockerClient) -> None:
    since = int(time.time()) - 1
    run = subprocess.Popen(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
            "tests/test_semantics.py", "tests/test_cache_memcached.py",
            "-k", "(redis and not fakeredis) or memcached",
        ],
        cwd=ROOT,
        env={**os.environ, servers.SERVERS_VARIABLE: "docker", "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]

    # What the engine saw of that run's containers: both images, every container removed.
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
            created[event["Actor"]["ID"]] = attributes["image"]
        elif event["Action"] == "destroy":
            destroyed.add(event["Actor"]["ID"])
    assert set(created.values()) == {REDIS_IMAGE, MEMCACHED_IMAGE}, output[-3000:]
    assert set(created) == destroyed


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

    monkeypatch.setattr(servers, "find_binary", lambda name: None)
    contained = servers.start_redis(tmp_path)
    contained.close()
    assert isinstance(contained, RedisContainer)

    monkeypatch.setenv(servers.SERVERS_VARIABLE, "binaries")
    with pytest.raises(servers.ServerUnavailable, match="redis-server is not installed"):
        servers.start_redis(tmp_path)


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
