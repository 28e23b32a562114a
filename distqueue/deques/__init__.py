"""Storage for :class:`distqueue.Deque`: the protocol (:mod:`.base`), in process memory
(:mod:`.memory`) and on Redis (:mod:`.redis`)."""
