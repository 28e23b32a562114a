-- Mark one task done.
--
-- KEYS[1] unfinished  string  items put and not yet marked done
-- KEYS[2] joined      list    token: "no task is unfinished", for join()
--
-- Returns the number still unfinished, or -1 (changing nothing) if none was unfinished.
local unfinished = tonumber(redis.call('GET', KEYS[1]) or '0')
if unfinished <= 0 then
    return -1
end
finish(KEYS[1], KEYS[2], 1)
return unfinished - 1
