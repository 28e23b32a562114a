#!lua flags=allow-oom
-- Take the item at one end of a deque.
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] "left" or "right"
--
-- Returns the payload, or false when the deque is empty. The token is left for the next
-- blocked pop while items remain.
redis.call('LLEN', KEYS[2])
local value = redis.call(ARGV[1] == 'left' and 'LPOP' or 'RPOP', KEYS[1])
deque_avail(KEYS[1], KEYS[2])
return value
