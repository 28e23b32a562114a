#!lua flags=allow-oom
-- Mark one task done.
--
-- KEYS[1] meta    hash  counters and flags (see lib.lua)
-- KEYS[2] joined  list  token: "no task is unfinished", for join()
--
-- Returns the number still unfinished, or -1 (changing nothing) if none was unfinished.
local unfinished = unfinished_of(KEYS[1])
if unfinished <= 0 then
    return -1
end
finish(KEYS[1], KEYS[2], 1)
return unfinished - 1
