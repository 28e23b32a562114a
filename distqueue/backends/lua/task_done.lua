-- Mark one task done.
--
-- KEYS[1] unfinished  string  items put and not yet marked done
-- KEYS[2] joined      list    at most one token: "no task is unfinished", for join()
--
-- Returns the number still unfinished, or -1 (changing nothing) if none was unfinished.
local unfinished = tonumber(redis.call('GET', KEYS[1]) or '0')
if unfinished <= 0 then
    return -1
end
unfinished = redis.call('DECR', KEYS[1])
if unfinished == 0 and redis.call('LLEN', KEYS[2]) == 0 then
    redis.call('LPUSH', KEYS[2], '1')
end
return unfinished
