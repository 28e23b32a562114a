-- Acknowledge leased items: they are done and leave the queue for good. Acknowledging twice, or
-- an item another consumer acknowledged already, changes nothing.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua)
-- KEYS[3] joined      list  token: "no task is unfinished", for join()
-- KEYS[4] leases      zset  lease id -> deadline
-- KEYS[5] payloads    hash  lease id -> raw value
-- KEYS[6] deliveries  hash  lease id -> times delivered
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2..] lease ids
--
-- Returns how many of them were acknowledged now.
local kind = ARGV[1]
local acked = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    local held = redis.call('ZREM', KEYS[4], id) == 1
    local raw = redis.call('HGET', KEYS[5], id)
    if raw and not held then
        -- its lease ran out and it may wait in the queue to be delivered again: take it out
        -- (a dead letter is neither leased nor waiting, and stays as it is)
        if kind == 'priority' then
            held = redis.call('ZREM', KEYS[1], make_ref(kind, raw, id)) == 1
        else
            held = redis.call('LREM', KEYS[1], 1, make_ref(kind, raw, id)) == 1
        end
    end
    if held then
        redis.call('HDEL', KEYS[5], id)
        redis.call('HDEL', KEYS[6], id)
        acked = acked + 1
    end
end
finish(KEYS[2], KEYS[3], acked)
return acked
