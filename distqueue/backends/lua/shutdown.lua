#!lua flags=allow-oom
-- Shut a queue down for every user of it, and wake everyone blocked on it.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua); "shutdown" is set here
-- KEYS[3] joined      list  token: "no task is unfinished", for join()
-- KEYS[4] shutdown    list  token that wakes every blocked producer, consumer and join()
-- KEYS[5] payloads    hash  item id -> raw value (of items delivered before, waiting again)
-- KEYS[6] deliveries  hash  item id -> times delivered
-- KEYS[7] sched       zset  items put with a delay, by due time (dropped with the others)
-- ARGV[1] "fifo", "lifo" or "priority"
-- ARGV[2] "1" to drop the waiting and scheduled items (each counts as done), "0" to keep them
-- for get() (scheduled ones still come due)
--
-- Returns the number of items dropped.
local kind = ARGV[1]
redis.call('HSET', KEYS[2], 'shutdown', '1')
local dropped = 0
if ARGV[2] == '1' then
    local values
    if kind == 'priority' then
        values = redis.call('ZRANGE', KEYS[1], 0, -1)
    else
        values = redis.call('LRANGE', KEYS[1], 0, -1)
    end
    for _, value in ipairs(values) do
        local lease = ref_of(kind, value)
        local id = lease and item_of(lease)
        if id then
            redis.call('HDEL', KEYS[5], id)
            redis.call('HDEL', KEYS[6], id)
        end
    end
    dropped = #values + redis.call('ZCARD', KEYS[7])
    redis.call('DEL', KEYS[1], KEYS[7])
    redis.call('HDEL', KEYS[2], 'scheduled')
    finish(KEYS[2], KEYS[3], dropped)
    if unfinished_of(KEYS[2]) == 0 then
        token(KEYS[3])
    end
end
token(KEYS[4])
return dropped
