#!lua
-- Add items with options: visible later (a due time, server time), and/or only if no put with
-- the same de-duplication key happened within its window.
--
-- KEYS[1] items    list or zset  the waiting values
-- KEYS[2] meta     hash  counters and flags (see lib.lua)
-- KEYS[3] notfull  list  token: "there may be room", for blocked producers
-- KEYS[4] joined   list  token: "no task is unfinished", for join()
-- KEYS[5] avail    list  token: "there may be an item", for blocked consumers
-- KEYS[6] sched    zset  items put with a delay, by due time (see promote in lib.lua)
-- KEYS[7] dedup    zset  de-duplication key -> end of its window (server time, ms)
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] maxsize (0 = unbounded); ARGV[3] the batch's
-- ticket ("" for one item; see refuse_put in lib.lua); ARGV[4] "in" (ARGV[5] is ms from now)
-- or "at" (ARGV[5] is a Unix time in ms); ARGV[6] the de-duplication key, "" for none;
-- ARGV[7] its window in ms; ARGV[8..] the values as put_list.lua or put_priority.lua take them.
--
-- Items due by now go in as put_list.lua and put_priority.lua put them, waiting for room the
-- same way. Items due later go to "sched", never wait for room, and count as unfinished at
-- once; a key then stays held at least until they are due.
--
-- Returns the queue's size (items due now) or 0 (items due later); -1 if the queue is shut
-- down; -2 if it is full; -3 if there is some room but not for all the items; -4 if the key
-- is held (nothing is written in those cases).
local kind = ARGV[1]
local maxsize = tonumber(ARGV[2])
local n = #ARGV - 7
if kind == 'priority' then
    n = n / 2
end
local flags = put_flags(KEYS[2])
local now = now_ms()
local due = tonumber(ARGV[5])
if ARGV[4] == 'in' then
    due = now + due
end
local key = ARGV[6]
if key ~= '' then
    local held = redis.call('ZSCORE', KEYS[7], key)
    if held and tonumber(held) > now then
        return -4
    end
end
local size = 0
if due > now then
    local refused = refuse_put(kind, KEYS[1], KEYS[2], KEYS[3], flags, n, 0, ARGV[3])
    if refused then
        return refused
    end
    local seq = redis.call('HINCRBY', KEYS[2], 'schedseq', n) - n
    local step = kind == 'priority' and 2 or 1
    local batch = {}
    for i = 8, #ARGV, step do
        seq = seq + 1
        local value = ARGV[i]
        if step == 2 then
            value = ARGV[i] .. ARGV[i + 1]
        end
        batch[#batch + 1] = due
        batch[#batch + 1] = scheduled_member(kind, seq, value)
        if #batch >= 4000 or i + step > #ARGV then
            redis.call('ZADD', KEYS[6], unpack(batch))
            batch = {}
        end
    end
    if not flags[10] then
        redis.call('HSET', KEYS[2], 'scheduled', '1')
    end
    start(KEYS[2], KEYS[4], n)
    if flags[3] then
        token(KEYS[5])  -- a waiting consumer works out again when to wake
    end
else
    if flags[10] then
        promote(kind, KEYS[1], KEYS[2], KEYS[6], now, 1000)
    end
    local refused = refuse_put(kind, KEYS[1], KEYS[2], KEYS[3], flags, n, maxsize, ARGV[3])
    if refused then
        return refused
    end
    if kind == 'priority' then
        local seq = redis.call('HINCRBY', KEYS[2], 'seq', n) - n
        local batch = {}
        for i = 8, #ARGV, 2 do
            seq = seq + 1
            batch[#batch + 1] = 0
            batch[#batch + 1] = ARGV[i] .. string.format('%016x', seq) .. ARGV[i + 1]
            if #batch >= 4000 or i + 1 >= #ARGV then
                redis.call('ZADD', KEYS[1], unpack(batch))
                batch = {}
            end
        end
    else
        for i = 8, #ARGV, 4000 do
            redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
        end
    end
    size = size_of(kind, KEYS[1])
    start(KEYS[2], KEYS[4], n)
    if flags[3] then
        token(KEYS[5])
    end
    if maxsize > 0 and flags[2] then
        if size >= maxsize then
            redis.call('DEL', KEYS[3])
        else
            token(KEYS[3])
        end
    end
end
if key ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
    redis.call('ZADD', KEYS[7], math.max(now + tonumber(ARGV[7]), due), key)
end
return size
