"""The Redis backend, in five parts: the key layout (:mod:`.keys`), how items are stored
(:mod:`.codec`), the table of Lua scripts (:mod:`.table`), the queue's behaviour with no I/O
(:mod:`.protocol`), and the blocking driver that performs it (:mod:`.backend`)."""

from .backend import RedisBackend
from .keys import QueueKeys

__all__ = ["QueueKeys", "RedisBackend"]
