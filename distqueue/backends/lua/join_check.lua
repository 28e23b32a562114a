-- Whether join() may return: no task is unfinished. Leaves the "joined" token in place for the
-- next waiter when it may.
--
-- KEYS[1] unfinished  string  items put and not yet marked done
-- KEYS[2] joined      list    token: "no task is unfinished"
--
-- Returns 1 when no task is unfinished, else 0.
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    return 0
end
token(KEYS[2])
return 1
