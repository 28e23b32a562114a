-- Remove up to ARGV[2] items from a queue without waiting.
--
-- KEYS[1] items    list or zset
-- KEYS[2] meta     hash  field "shutdown" is set once the queue is shut down
-- KEYS[3] notfull  list  at most one token: "there may be room", for blocked producers
-- ARGV[1] "fifo" (pop at the right), "lifo" (pop at the left) or "priority" (lowest member)
-- ARGV[2] how many items at most
--
-- Returns the popped payloads (list and zset members alike, oldest or lowest first), an empty
-- array if the queue is empty, or -1 if it is empty and shut down.
local count = tonumber(ARGV[2])
local popped
if ARGV[1] == 'fifo' then
    popped = redis.call('RPOP', KEYS[1], count)
elseif ARGV[1] == 'lifo' then
    popped = redis.call('LPOP', KEYS[1], count)
else
    local found = redis.call('ZPOPMIN', KEYS[1], count)
    popped = {}
    for i = 1, #found, 2 do
        popped[#popped + 1] = found[i]
    end
    if #popped == 0 then
        popped = false
    end
end
if not popped then
    if redis.call('HEXISTS', KEYS[2], 'shutdown') == 1 then
        return -1
    end
    return {}
end
if redis.call('LLEN', KEYS[3]) == 0 then
    redis.call('LPUSH', KEYS[3], '1')
end
return popped
