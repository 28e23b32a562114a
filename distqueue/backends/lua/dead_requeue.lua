#!lua
-- Put dead letters back on the queue, oldest first, as new unfinished items with a fresh
-- delivery count.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash    counters and flags (see lib.lua)
-- KEYS[3] joined      list    token: "no task is unfinished", for join()
-- KEYS[4] avail       list    token: "there may be an item", for blocked consumers
-- KEYS[5] payloads    hash    item id -> raw value
-- KEYS[6] deliveries  hash    item id -> times delivered
-- KEYS[7] dead        list    item ids of dead letters, newest at the left
-- KEYS[8] errors      hash    item id -> why it is a dead letter
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] how many at most
--
-- Returns the number requeued.
local kind = ARGV[1]
local requeued = 0
for _ = 1, tonumber(ARGV[2]) do
    local id = redis.call('RPOP', KEYS[7])
    if not id then
        break
    end
    local raw = redis.call('HGET', KEYS[5], id)
    redis.call('HDEL', KEYS[8], id)
    if raw then
        redis.call('HSET', KEYS[6], id, 0)
        push_new(kind, KEYS[1], make_ref(kind, raw, id .. ':0'))
        requeued = requeued + 1
    end
end
if requeued > 0 then
    start(KEYS[2], KEYS[3], requeued)
    redis.call('HSET', KEYS[2], 'leased', '1')  -- they wait as references: see take.lua
    token(KEYS[4])
end
return requeued
