"""URLs: what each form opens, and a clear ValueError for anything else."""

from __future__ import annotations

from typing import Any

import pytest

import distqueue
from distqueue.url import redis_connection_kwargs


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "ftp://localhost/",
        "redis://",
        "redis://localhost:notaport/0",
        "redis://localhost:6379/zero",
        "redis://localhost:6379/-1",
        "memory://somewhere",
        "unix://",
        "unix://relative/path.sock",
        "redis://localhost/0?socket_timeout=2&sockettimeout=3",
        "redis://localhost/0?socket_timeout=soon",
        "redis://localhost/0?socket_timeout=0",
        "redis://localhost/0?retry_window=-1",
        "redis://localhost/0?retry_window=3600",
        "redis://localhost/0?outage_limit=inf",
        "redis://localhost/0?socket_timeout=1&socket_timeout=2",
        "redis://localhost/2?db=3",
    ],
)
def test_a_malformed_or_unknown_url_is_a_value_error_naming_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        distqueue.Queue(url=url)
    assert url in str(info.value)


def test_redis_urls_give_host_port_db_and_credentials() -> None:
    assert redis_connection_kwargs("redis://u%40x:p%2Fw@example.org:6380/3") == {
        "host": "example.org",
        "port": 6380,
        "db": 3,
        "username": "u@x",
        "password": "p/w",
    }
    assert redis_connection_kwargs("rediss://:secret@h")["ssl"] is True
    assert redis_connection_kwargs("rediss://:secret@h")["password"] == "secret"
    assert redis_connection_kwargs("unix:///run/redis.sock?db=2") == {
        "unix_socket_path": "/run/redis.sock",
        "db": 2,
    }
    # the password goes to the password, never into the socket's path
    assert redis_connection_kwargs("unix://:s%40cret@/run/redis.sock") == {
        "unix_socket_path": "/run/redis.sock",
        "db": 0,
        "password": "s@cret",
    }


def test_unknown_query_parameters_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'sockettimeout'"):
        distqueue.Queue(url="redis://localhost/0?sockettimeout=3")


def test_time_limits_come_from_the_url() -> None:
    from distqueue.backends.connection import RedisOptions
    from distqueue.url import redis_options

    url = "redis://localhost/0?socket_timeout=0.5&connect_timeout=0.25&retry_window=7"
    assert redis_options(url) == RedisOptions(
        socket_timeout=0.5, connect_timeout=0.25, retry_window=7, outage_limit=60
    )
    # that the clients keep them is shown by the bounds in test_faults.py


def test_no_url_means_memory_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.delenv("DISTQUEUE_URL", raising=False)
    assert distqueue.Queue().url == "memory://"
    monkeypatch.setenv("DISTQUEUE_URL", redis_url)
    a: distqueue.Queue[Any] = distqueue.Queue(name="from-env")
    b: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name="from-env")
    assert a.url == redis_url
    a.put("shared")
    assert b.get(timeout=1) == "shared"
    a.close()
    b.close()


def test_url_and_client_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either"):
        distqueue.Queue(url="memory://", client=object())


def test_a_fresh_queue_gets_a_unique_name() -> None:
    assert distqueue.Queue().name != distqueue.Queue().name


def test_the_public_names() -> None:
    assert sorted(distqueue.__all__) == sorted(
        [
            "AuthenticationError",
            "BackOff",
            "BackendConnectionError",
            "BackendError",
            "Cache",
            "CacheStats",
            "DeadLetter",
            "Deque",
            "DeserializationError",
            "DistQueueError",
            "Empty",
            "Executor",
            "Full",
            "LeaseLost",
            "LifoQueue",
            "Limits",
            "Message",
            "Outcome",
            "OutcomeUnknownError",
            "PriorityQueue",
            "Queue",
            "ResultMissing",
            "ResultStore",
            "ResultTimeout",
            "SerializationError",
            "ShutDown",
            "SimpleQueue",
            "SubmitOptions",
            "TaskFailed",
            "ValueTooLargeError",
            "WrongTypeError",
            "cached",
            "task",
        ]
    )
    for name in distqueue.__all__:
        assert hasattr(distqueue, name)
