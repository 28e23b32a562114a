#!lua flags=allow-oom
-- Acknowledge deliveries: their items are done and leave the queue for good. A token whose
-- delivery is over (acknowledged already, or its lease ran out and the item was handed to
-- someone else) changes nothing.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua)
-- KEYS[3] joined      list  token: "no task is unfinished", for join()
-- KEYS[4] leases      zset  lease token -> deadline
-- KEYS[5] payloads    hash  item id -> raw value
-- KEYS[6] deliveries  hash  item id -> times delivered
-- KEYS[7] avail       list  token: "there may be an item", for a consumer held back by the
--                           concurrency limit (meta "limited")
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2..] lease tokens
--
-- Returns how many of them were acknowledged now.
local kind = ARGV[1]
local acked = 0
for i = 2, #ARGV do
    local lease = ARGV[i]
    if release(kind, KEYS[1], KEYS[4], KEYS[5], lease) then
        local id = item_of(lease)
        redis.call('HDEL', KEYS[5], id)
        redis.call('HDEL', KEYS[6], id)
        acked = acked + 1
    end
end
finish(KEYS[2], KEYS[3], acked)
if acked > 0 and redis.call('HEXISTS', KEYS[2], 'limited') == 1 then
    token(KEYS[7])
end
return acked
