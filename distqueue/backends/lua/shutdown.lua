-- Shut a queue down for every user of it, and wake everyone blocked on it.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua); "shutdown" is set here
-- KEYS[3] joined      list  token: "no task is unfinished", for join()
-- KEYS[4] shutdown    list  token that wakes blocked producers, join(), leasing consumers and
--                           FIFO/LIFO consumers (who block on the items list and this one)
-- KEYS[5] shutdownz   zset  token that wakes blocked consumers of a priority queue
-- KEYS[6] payloads    hash  lease id -> raw value (of redelivered items waiting in the queue)
-- KEYS[7] deliveries  hash  lease id -> times delivered
-- ARGV[1] "fifo", "lifo" or "priority"
-- ARGV[2] "1" to drop the waiting items (each counts as done), "0" to keep them for get()
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
        local id = ref_of(kind, value)
        if id then
            redis.call('HDEL', KEYS[6], id)
            redis.call('HDEL', KEYS[7], id)
        end
    end
    dropped = #values
    redis.call('DEL', KEYS[1])
    finish(KEYS[2], KEYS[3], dropped)
    if unfinished_of(KEYS[2]) == 0 then
        token(KEYS[3])
    end
end
token(KEYS[4])
redis.call('ZADD', KEYS[5], 0, 'shutdown')
return dropped
