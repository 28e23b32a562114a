#!lua flags=allow-oom
-- The number of waiting items, counting those whose lease ran out (which go back to the queue
-- now, as they would for the next get()) and the scheduled items that are due (which enter
-- it now); and the number of items still scheduled.
--
-- KEYS[1] items     list or zset
-- KEYS[2] leases    zset  lease token -> deadline (server time, ms)
-- KEYS[3] payloads  hash  item id -> raw value
-- KEYS[4] meta      hash  counters and flags (see lib.lua)
-- KEYS[5] sched     zset  items put with a delay, by due time (see promote in lib.lua)
-- ARGV[1] "fifo", "lifo" or "priority"
--
-- Returns {waiting, scheduled}.
local kind = ARGV[1]
local now = now_ms()
while reclaim(kind, KEYS[1], KEYS[2], KEYS[3], now, 1000) == 1000 do
end
while promote(kind, KEYS[1], KEYS[4], KEYS[5], now, 1000) == 1000 do
end
return {size_of(kind, KEYS[1]), redis.call('ZCARD', KEYS[5])}
