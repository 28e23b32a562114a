"""A Redis Cluster and a Sentinel-watched master for the tests, on 127.0.0.1: every node a
server of its own that a test may kill and restart.

The nodes are local redis-server processes where the binary is installed, else ``redis:7``
containers in the host's network of a Docker engine (:func:`launcher`; ``DISTQUEUE_TEST_SERVERS``
forces one way, as for single servers). In the host's network every node has the one address
that clients, the other nodes and the sentinels all use; published ports would give a node one
address outside its container and another inside.

The cluster is made here with CLUSTER commands (ADDSLOTSRANGE, MEET, REPLICATE) rather than by
``redis-cli --cluster create``: the same few calls for processes and containers, and nothing
needed but redis-server, in an image or on the machine.

Failures are quick here (``cluster-node-timeout`` and ``down-after-milliseconds`` of one second)
so that a fail-over takes a few seconds; production settings are longer, and so are fail-overs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from servers import (
    ServerUnavailable,
    free_port,
    installed_binary,
    redis_server_command,
    uses_docker,
    wait_for_port,
)

if TYPE_CHECKING:
    from containers import ContainerServer

NODE_TIMEOUT_MS = 1000
SLOTS = 16384


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; ``AssertionError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (redis.exceptions.RedisError, OSError) as exc:
            last_error = exc
        else:
            if found:
                return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s (last error: {last_error})")


# -- nodes -----------------------------------------------------------------------------------------


class Node:
    """One redis-server (or sentinel) on 127.0.0.1:``port``, that a test may kill and start
    again on the same port with what it had written to disk."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, replicas or the rest of the cluster."""
        raise NotImplementedError

    def close(self) -> None:
        """Done with for good."""
        self.kill()

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, socket_timeout=5, decode_responses=True, **kwargs
        )

    def role(self) -> str:
        with self.client() as client:
            return str(client.execute_command("ROLE")[0])


class ProcessNode(Node):
    """A server process run by the command line ``args``."""

    def __init__(self, port: int, args: Sequence[str]) -> None:
        super().__init__(port)
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_port(self.port, self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)


class ContainerNode(Node):
    """A server in a container (already started), removed by ``close()``."""

    def __init__(self, server: ContainerServer) -> None:
        super().__init__(server.port)
        self.server = server

    def start(self) -> None:
        self.server.start()

    @property
    def running(self) -> bool:
        return self.server.running

    def kill(self) -> None:
        self.server.kill()

    def close(self) -> None:
        self.server.close()


class Launcher:
    """Where the nodes of a cluster or a sentinel group come from."""

    def server(self, name: str, extra: Sequence[str]) -> Node:
        """A running redis-server on a free port, with ``extra`` arguments."""
        raise NotImplementedError

    def sentinel(self, name: str, config: Sequence[str]) -> Node:
        """A running sentinel on a free port, configured by the lines ``config``."""
        raise NotImplementedError


class ProcessLauncher(Launcher):
    """Processes of the local ``binary``, each with a directory of its own under ``directory``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory

    def _directory(self, name: str) -> Path:
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def server(self, name: str, extra: Sequence[str]) -> Node:
        port = free_port()
        args = redis_server_command(
            self.binary, port, self._directory(name), loglevel="notice", extra=extra
        )
        node = ProcessNode(port, args)
        node.start()
        return node

    def sentinel(self, name: str, config: Sequence[str]) -> Node:
        directory = self._directory(name)
        port = free_port()
        conf = directory / "sentinel.conf"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"logfile {directory / 'sentinel.log'}",
            *config,
        ]
        conf.write_text("".join(f"{line}\n" for line in lines))
        node = ProcessNode(port, [self.binary, str(conf), "--sentinel"])
        node.start()
        return node


class ContainerLauncher(Launcher):
    """``redis:7`` containers in the host's network of the Docker engine."""

    def server(self, name: str, extra: Sequence[str]) -> Node:
        from containers import EngineUnavailable, RedisContainer

        try:
            return ContainerNode(RedisContainer(free_port(), extra=extra, host_network=True))
        except EngineUnavailable as exc:
            raise ServerUnavailable(str(exc)) from None

    def sentinel(self, name: str, config: Sequence[str]) -> Node:
        from containers import EngineUnavailable, SentinelContainer

        try:
            return ContainerNode(SentinelContainer(free_port(), config))
        except EngineUnavailable as exc:
            raise ServerUnavailable(str(exc)) from None


def launcher(directory: Path) -> Launcher:
    """Local redis-server processes (their files under ``directory``), else containers.

    Raises :class:`ServerUnavailable` when neither can be had, saying why in one line.
    """
    if uses_docker("redis-server"):
        from containers import EngineUnavailable, engine

        try:
            engine()
        except EngineUnavailable as exc:
            raise ServerUnavailable(str(exc)) from None
        return ContainerLauncher()
    return ProcessLauncher(installed_binary("redis-server"), directory)


# -- a cluster -------------------------------------------------------------------------------------


def cluster_nodes(client: Any) -> list[str]:
    """The lines of CLUSTER NODES: one per node this node knows, itself included."""
    reply = client.execute_command("CLUSTER", "NODES")
    text = reply if isinstance(reply, str) else "\n".join(reply)
    return text.strip().splitlines()


class Cluster:
    """Three masters with one replica each (or ``replicas`` each); a failure half-way removes
    the nodes started so far."""

    def __init__(self, launcher: Launcher, masters: int = 3, replicas: int = 1) -> None:
        self.nodes: list[Node] = []
        self.bus_ports: list[int] = []
        try:
            for i in range(masters * (1 + replicas)):
                bus = free_port()
                self.nodes.append(
                    launcher.server(
                        f"node{i}",
                        [
                            "--cluster-enabled", "yes",
                            "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                            "--cluster-port", str(bus),
                            # a replica promotes itself however long its master was gone
                            "--cluster-replica-validity-factor", "0",
                        ],
                    )
                )  # fmt: skip
                self.bus_ports.append(bus)
            self._join(masters)
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def _join(self, masters: int) -> None:
        """What ``redis-cli --cluster create`` does: the first ``masters`` nodes share the slots
        (each with an epoch of its own), all meet, and each of the rest replicates a master."""
        shards = self.nodes[:masters]
        for i, node in enumerate(shards):
            with node.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                first, end = i * SLOTS // masters, (i + 1) * SLOTS // masters
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, end - 1)
        with self.nodes[0].client() as client:
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        wait_until(self._all_met, 30, "every node knows every other")
        for i, node in enumerate(self.nodes[masters:]):
            master_id = self.node_id(shards[i % masters])
            with node.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", master_id)

    def _all_met(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                flags = [line.split()[2] for line in cluster_nodes(client)]
            if len(flags) != len(self.nodes) or any(
                "handshake" in flag or "noaddr" in flag for flag in flags
            ):
                return False
        return True

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node (any one would do)."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def by_port(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def master_of_slot(self, slot: int) -> Node:
        """The node that the running nodes agree owns ``slot``."""
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        return self.by_port(int(master[1]))
        raise AssertionError(f"no running node knows who owns slot {slot}")

    def master_of_key(self, key: str) -> Node:
        with self.running_node().client() as client:
            return self.master_of_slot(int(client.execute_command("CLUSTER", "KEYSLOT", key)))

    def running_node(self) -> Node:
        return next(node for node in self.nodes if node.running)

    def masters(self) -> list[Node]:
        return [node for node in self.nodes if node.running and node.role() == "master"]

    def _healthy(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
                if node.role() == "slave":
                    replication = client.info("replication")
                    if replication.get("master_link_status") != "up":
                        return False
        # every node sees every other node, and as many masters as there are shards
        views = set()
        for node in self.nodes:
            with node.client() as client:
                lines = cluster_nodes(client)
            views.add(
                tuple(
                    sorted(
                        (line.split()[1].split("@")[0], "master" in line.split()[2])
                        for line in lines
                        if "fail" not in line.split()[2]
                    )
                )
            )
        return len(views) == 1 and len(next(iter(views))) == len(self.nodes)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every node runs, all agree on the layout, and every replica is in sync."""
        for node in self.nodes:
            if not node.running:
                node.start()
        wait_until(self._healthy, timeout, "cluster healthy")

    def kill_master_and_wait_for_promotion(self, master: Node, timeout: float = 30.0) -> Node:
        """SIGKILL ``master``; returns its replica once that replica has become master and the
        cluster serves every slot again."""
        replica_ids = set()
        with master.client() as client:
            own_id = client.execute_command("CLUSTER", "MYID")
            for line in client.execute_command("CLUSTER", "REPLICAS", own_id):
                replica_ids.add(line.split()[1].split("@")[0])
        master.kill()

        def promoted() -> Node | None:
            for node in self.nodes:
                if node.address in replica_ids and node.running and node.role() == "master":
                    with node.client() as client:
                        if "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"):
                            return node
            return None

        found: Node = wait_until(promoted, timeout, f"a replica of {master.address} promoted")
        return found

    def node_id(self, node: Node) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID"))

    def begin_migration(self, slot: int, target: Node) -> Node:
        """Mark ``slot`` as migrating from its master to ``target``; returns the source."""
        source = self.master_of_slot(slot)
        with target.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        with source.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        return source

    def move_keys(self, slot: int, source: Node, target: Node, limit: int = 1000) -> int:
        """MIGRATE up to ``limit`` keys of ``slot`` from ``source`` to ``target``."""
        with source.client() as client:
            keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, limit)
            if keys:
                client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
        return len(keys)

    def finish_migration(self, slot: int, source: Node, target: Node) -> None:
        """Move the rest of ``slot``'s keys and give the slot to ``target`` on every master."""
        while self.move_keys(slot, source, target):
            pass
        target_id = self.node_id(target)
        for node in [target, source, *self.masters()]:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


# -- a sentinel group ------------------------------------------------------------------------------


class SentinelGroup:
    """A master, one replica, and three sentinels watching them as ``mymaster``; a failure
    half-way removes the servers started so far."""

    SERVICE = "mymaster"

    def __init__(self, launcher: Launcher) -> None:
        self.servers: list[Node] = []
        self.sentinels: list[Node] = []
        try:
            self.master = launcher.server("a", [])
            self.servers.append(self.master)
            self.replica = launcher.server("b", ["--replicaof", "127.0.0.1", str(self.master.port)])
            self.servers.append(self.replica)
            config = [
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {self.SERVICE} {NODE_TIMEOUT_MS}",
                f"sentinel failover-timeout {self.SERVICE} 10000",
                f"sentinel parallel-syncs {self.SERVICE} 1",
            ]
            for i in range(3):
                self.sentinels.append(launcher.sentinel(f"sentinel{i}", config))
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def sentinel_client(self) -> redis.Redis:
        return self.sentinels[0].client()

    def current_master(self) -> Node:
        """The server that the sentinels name as master (all three agree)."""

        def agreed() -> Node | None:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    host_port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE
                    )
                    ports.add(int(host_port[1]))
            if len(ports) != 1:
                return None
            port = ports.pop()
            return next(node for node in self.servers if node.port == port)

        found: Node = wait_until(agreed, 30, "the sentinels agree on the master")
        return found

    def _healthy(self) -> bool:
        master = self.current_master()
        if not master.running or master.role() != "master":
            return False
        for node in self.servers:
            if node is master:
                continue
            if not node.running or node.role() != "slave":
                return False
            with node.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        with self.sentinel_client() as client:
            fields = client.sentinel_master(self.SERVICE)
            return (
                int(fields["num-slaves"]) >= 1
                and int(fields["num-other-sentinels"]) == 2
                and not fields["is_sdown"]
                and not fields["is_odown"]
            )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until both servers run, one is master, the other its replica in sync, and every
        sentinel knows of both and of the other sentinels."""
        for node in self.servers:
            if not node.running:
                node.start()
        wait_until(self._healthy, timeout, "sentinel group healthy")

    def kill_master_and_wait_for_promotion(self, timeout: float = 30.0) -> Node:
        """SIGKILL the master; the other server once the sentinels promoted it."""
        old = self.current_master()
        old.kill()
        new = next(node for node in self.servers if node is not old)

        def promoted() -> bool:
            return new.role() == "master" and self.current_master() is new

        wait_until(promoted, timeout, f"{new.address} promoted")
        return new

    def fail_over_by_hand(self, timeout: float = 30.0) -> Node:
        """``SENTINEL FAILOVER``: the master, still running, is demoted and its replica
        promoted; returns the new master once the old one reports ROLE slave."""
        old = self.current_master()
        new = next(node for node in self.servers if node is not old)
        with self.sentinel_client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.SERVICE)

        def swapped() -> bool:
            return new.role() == "master" and old.role() == "slave" and self.current_master() is new

        wait_until(swapped, timeout, f"{new.address} promoted and {old.address} demoted")
        return new

    def restart_old_master(self, node: Node, timeout: float = 60.0) -> None:
        """Start ``node`` again and wait until the sentinels made it a replica (ROLE slave).
        They do so at a later look at it, which a busy machine delays: 30 s were not always
        enough."""
        node.start()
        wait_until(lambda: node.role() == "slave", timeout, f"{node.address} demoted")

    def close(self) -> None:
        for node in [*self.sentinels, *self.servers]:
            node.close()
