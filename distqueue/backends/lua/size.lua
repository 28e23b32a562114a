#!lua flags=allow-oom
-- The number of waiting items, counting those whose lease ran out (which go back to the queue
-- now, as they would for the next get()).
--
-- KEYS[1] items     list or zset
-- KEYS[2] leases    zset  lease token -> deadline (server time, ms)
-- KEYS[3] payloads  hash  item id -> raw value
-- ARGV[1] "fifo", "lifo" or "priority"
local kind = ARGV[1]
local now = now_ms()
while reclaim(kind, KEYS[1], KEYS[2], KEYS[3], now, 1000) == 1000 do
end
return size_of(kind, KEYS[1])
