"""The key-value layer under :class:`~distqueue.cache.Cache` and
:class:`~distqueue.results.ResultStore`: bytes stored under keys with a TTL, on memcached,
Redis or in memory, and values turned into those bytes.

Modules, from the bottom up:

``base``        the backend contract (bytes in, bytes out), TTL checks, server health
``memory``, ``memcached``   the backends
``redisprotocol``   the Redis backend's behaviour as steps with no I/O (its scripts are
                ``distqueue/backends/lua/kv_*.lua``, run by the queues' loaders), performed
                by ``redis`` (blocking) and ``aioredis`` (asyncio)
``url``         the URL forms, and the backend for each
``keys``        storage keys every server accepts, one namespace apart from another
``frames``      the bytes stored for a value, and the manifests of chunked ones
``steps``       operations as generators of backend calls, and their blocking and asyncio
                drivers
``values``      :class:`~distqueue.kv.values.ValueSteps`: values serialized, compressed and
                chunked over a backend, and read back, as such operations

Nothing here decides what a failed server means to a caller: the cache counts it as a miss,
the result store raises it.
"""
