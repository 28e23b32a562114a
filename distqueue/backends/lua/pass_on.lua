#!lua flags=allow-oom
-- Put back a "there may be room" or "no task is unfinished" token that a client took for tasks
-- of its own that stopped waiting before it came (see redis/waits.py), so that a client
-- blocked on the same list elsewhere is not left asleep. A token that turns out stale costs
-- its taker one look, never a wrong answer.
--
-- KEYS[1] notfull  list  token: "there may be room", for blocked producers
-- KEYS[2] joined   list  token: "no task is unfinished", for join()
-- ARGV[1] which: 1 (notfull) or 2 (joined)
--
-- Returns 1.
token(KEYS[tonumber(ARGV[1]) == 2 and 2 or 1])
return 1
