-- Whether join() may return: no task is unfinished. Leaves the "joined" token in place for the
-- next waiter when it may.
--
-- KEYS[1] unfinished  string  items put and not yet marked done
-- KEYS[2] joined      list    at most one token: "no task is unfinished"
--
-- Returns 1 when no task is unfinished, else 0.
local unfinished = tonumber(redis.call('GET', KEYS[1]) or '0')
if unfinished > 0 then
    return 0
end
if redis.call('LLEN', KEYS[2]) == 0 then
    redis.call('LPUSH', KEYS[2], '1')
end
return 1
