#!lua flags=allow-oom
-- Whether join() may return: no task is unfinished. Leaves the "joined" token in place for the
-- next waiter when it may.
--
-- KEYS[1] meta    hash  counters and flags (see lib.lua)
-- KEYS[2] joined  list  token: "no task is unfinished"
--
-- Returns 1 when no task is unfinished, else 0.
if unfinished_of(KEYS[1]) > 0 then
    return 0
end
token(KEYS[2])
return 1
