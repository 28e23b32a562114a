#!lua
-- Add items to a FIFO or LIFO queue (a Redis list; items enter at the left).
--
-- KEYS[1] items    list  the waiting payloads
-- KEYS[2] meta     hash  counters and flags (see lib.lua)
-- KEYS[3] notfull  list  token: "there may be room", for blocked producers
-- KEYS[4] joined   list  token: "no task is unfinished", for join()
-- KEYS[5] avail    list  token: "there may be an item", for blocked consumers
-- KEYS[6] sched    zset  items put with a delay, by due time (see promote in lib.lua)
-- ARGV[1] "fifo" or "lifo"; ARGV[2] maxsize (0 = unbounded); ARGV[3] the batch's ticket ("" for
-- a single put; see refuse_put in lib.lua); ARGV[4..] the payloads, in order
--
-- Returns the new length; -1 if the queue is shut down; -2 if it is full; -3 if there is some
-- room but not for all the items (nothing is written in those cases). What can fail (a key of
-- the wrong type, a count that is not a number) fails before anything is written.
local n = #ARGV - 3
local flags = put_flags(KEYS[2])
local maxsize = tonumber(ARGV[2])
if flags[10] then
    promote(ARGV[1], KEYS[1], KEYS[2], KEYS[6], now_ms(), 1000)  -- visible before this put
end
local refused = refuse_put(ARGV[1], KEYS[1], KEYS[2], KEYS[3], flags, n, maxsize, ARGV[3])
if refused then
    return refused
end
local len = 0
for i = 4, #ARGV, 4000 do
    len = redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
start(KEYS[2], KEYS[4], n)
redis.call('HINCRBY', KEYS[2], 'puts', n)  -- for the put rate (distqueue stats)
if flags[3] then
    token(KEYS[5])
end
if maxsize > 0 and flags[2] then
    if len >= maxsize then
        redis.call('DEL', KEYS[3])
    else
        token(KEYS[3])
    end
end
return len
