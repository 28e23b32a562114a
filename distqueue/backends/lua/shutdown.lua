-- Shut a queue down for every user of it, and wake everyone blocked on it.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash    field "shutdown" is set here
-- KEYS[3] unfinished  string  items put and not yet marked done
-- KEYS[4] joined      list    at most one token: "no task is unfinished", for join()
-- KEYS[5] shutdown    list    token that wakes blocked producers and join() (and FIFO/LIFO
--                             consumers, who block on the items list and this one)
-- KEYS[6] shutdownz   zset    token that wakes blocked consumers of a priority queue
-- ARGV[1] "1" to drop the waiting items (each counts as done), "0" to keep them for get()
--
-- Returns the number of items dropped.
redis.call('HSET', KEYS[2], 'shutdown', '1')
local dropped = 0
if ARGV[1] == '1' then
    local kind = redis.call('TYPE', KEYS[1])['ok']
    if kind == 'list' then
        dropped = redis.call('LLEN', KEYS[1])
    elseif kind == 'zset' then
        dropped = redis.call('ZCARD', KEYS[1])
    end
    redis.call('DEL', KEYS[1])
    local unfinished = tonumber(redis.call('GET', KEYS[3]) or '0')
    unfinished = math.max(0, unfinished - dropped)
    redis.call('SET', KEYS[3], unfinished)
    if unfinished == 0 and redis.call('LLEN', KEYS[4]) == 0 then
        redis.call('LPUSH', KEYS[4], '1')
    end
end
if redis.call('LLEN', KEYS[5]) == 0 then
    redis.call('LPUSH', KEYS[5], '1')
end
redis.call('ZADD', KEYS[6], 0, 'shutdown')
return dropped
