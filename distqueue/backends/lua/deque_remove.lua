#!lua flags=allow-oom
-- Remove the first item of a deque (from the left) whose payload is ARGV[1].
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] the payload
--
-- Returns 1, or 0 when no item has that payload.
redis.call('LLEN', KEYS[2])
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
deque_avail(KEYS[1], KEYS[2])
return removed
