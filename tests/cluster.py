"""A Redis Cluster and a Sentinel-watched master for the tests, on 127.0.0.1, with Debian's
redis-server and redis-cli: every node a process of its own that a test may kill and restart.

Failures are quick here (``cluster-node-timeout`` and ``down-after-milliseconds`` of one second)
so that a fail-over takes a few seconds; production settings are longer, and so are fail-overs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from servers import free_port, redis_server_command, wait_for_port

NODE_TIMEOUT_MS = 1000


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


class Node:
    """One redis-server process on a fixed port, in a directory of its own."""

    def __init__(self, binary: str, directory: Path, extra: list[str]) -> None:
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = redis_server_command(
            self.binary, self.port, self.directory, loglevel="notice", extra=self.extra
        )
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, socket_timeout=5, decode_responses=True, **kwargs
        )

    def role(self) -> str:
        with self.client() as client:
            return str(client.execute_command("ROLE")[0])


class Cluster:
    """Three masters with one replica each (or ``replicas`` each), made with ``redis-cli
    --cluster create``."""

    def __init__(
        self, server: str, cli: str, directory: Path, masters: int = 3, replicas: int = 1
    ) -> None:
        self.cli = cli
        self.nodes: list[Node] = []
        for i in range(masters * (1 + replicas)):
            bus = free_port()
            self.nodes.append(
                Node(
                    server,
                    directory / f"node{i}",
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
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                cli, "--cluster", "create", *(node.address for node in self.nodes),
                "--cluster-replicas", str(replicas), "--cluster-yes",
            ],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        self.wait_healthy()

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
                lines = client.execute_command("CLUSTER", "NODES")
                text = lines if isinstance(lines, str) else "\n".join(lines)
                views.add(
                    tuple(
                        sorted(
                            (line.split()[1].split("@")[0], "master" in line.split()[2])
                            for line in text.strip().splitlines()
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
            node.kill()


class SentinelGroup:
    """A master, one replica, and three sentinels watching them as ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self, server: str, directory: Path) -> None:
        self.master = Node(server, directory / "a", [])
        self.master.start()
        self.replica = Node(
            server, directory / "b", ["--replicaof", "127.0.0.1", str(self.master.port)]
        )
        self.replica.start()
        self.servers = [self.master, self.replica]
        self.sentinels: list[tuple[int, subprocess.Popen[bytes]]] = []
        for i in range(3):
            port = free_port()
            sentinel_dir = directory / f"sentinel{i}"
            sentinel_dir.mkdir(parents=True)
            conf = sentinel_dir / "sentinel.conf"
            conf.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {sentinel_dir}\n"
                f"logfile {sentinel_dir / 'sentinel.log'}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            process = subprocess.Popen(
                [server, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            wait_for_port(port, process)
            self.sentinels.append((port, process))
        self.wait_healthy()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port, _ in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.sentinels[0][0], socket_timeout=5, decode_responses=True
        )

    def current_master(self) -> Node:
        """The server that the sentinels name as master (all three agree)."""

        def agreed() -> Node | None:
            ports = set()
            for port, _ in self.sentinels:
                with redis.Redis(
                    "127.0.0.1", port, socket_timeout=5, decode_responses=True
                ) as client:
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

    def restart_old_master(self, node: Node, timeout: float = 30.0) -> None:
        """Start ``node`` again and wait until the sentinels made it a replica (ROLE slave)."""
        node.start()
        wait_until(lambda: node.role() == "slave", timeout, f"{node.address} demoted")

    def close(self) -> None:
        for _, process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for node in self.servers:
            node.kill()
