#!lua
-- Add items to a priority queue (a Redis sorted set; every score is 0, so members are ordered
-- byte by byte).
--
-- KEYS[1] items    zset  members: sort key .. sequence .. payload .. key length (see lib.lua)
-- KEYS[2] meta     hash  counters and flags (see lib.lua)
-- KEYS[3] notfull  list  token: "there may be room", for blocked producers
-- KEYS[4] joined   list  token: "no task is unfinished", for join()
-- KEYS[5] avail    list  token: "there may be an item", for blocked consumers
-- KEYS[6] sched    zset  items put with a delay, by due time (see promote in lib.lua)
-- ARGV[1] "priority"; ARGV[2] maxsize (0 = unbounded); ARGV[3] the batch's ticket ("" for a
-- single put; see refuse_put in lib.lua); then for each item: its sort key, then its payload
-- followed by the sort key's length in 8 hex digits.
--
-- The sort key orders items as Python compares them; the sequence number after it keeps items
-- that compare equal first-in-first-out and makes every member unique, so two identical items
-- stay two entries.
--
-- Returns the new size; -1 if the queue is shut down; -2 if it is full; -3 if there is some
-- room but not for all the items (nothing is written in those cases). What can fail (a key of
-- the wrong type, a count that is not a number) fails before anything is written.
local n = (#ARGV - 3) / 2
local flags = put_flags(KEYS[2])
local maxsize = tonumber(ARGV[2])
if flags[10] then
    promote(ARGV[1], KEYS[1], KEYS[2], KEYS[6], now_ms(), 1000)  -- visible before this put
end
local refused = refuse_put(ARGV[1], KEYS[1], KEYS[2], KEYS[3], flags, n, maxsize, ARGV[3])
if refused then
    return refused
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', n) - n
local size = 0
local batch = {}
for i = 4, #ARGV, 2 do
    seq = seq + 1
    batch[#batch + 1] = 0
    batch[#batch + 1] = ARGV[i] .. string.format('%016x', seq) .. ARGV[i + 1]
    if #batch >= 4000 or i + 1 >= #ARGV then
        size = size + redis.call('ZADD', KEYS[1], unpack(batch))
        batch = {}
    end
end
start(KEYS[2], KEYS[4], n)
redis.call('HINCRBY', KEYS[2], 'puts', n)  -- for the put rate (distqueue stats)
if flags[3] then
    token(KEYS[5])
end
if maxsize > 0 and flags[2] then
    if redis.call('ZCARD', KEYS[1]) >= maxsize then
        redis.call('DEL', KEYS[3])
    else
        token(KEYS[3])
    end
end
return size
