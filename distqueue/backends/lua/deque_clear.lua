#!lua flags=allow-oom
-- Remove every item of a deque (its maxlen stays).
--
-- KEYS[1] list   list  the items
-- KEYS[2] avail  list  token: "there may be an item", for blocked pops
--
-- Returns how many items there were.
local len = redis.call('LLEN', KEYS[1])
redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return len
