#!lua
-- Requeue or delete the dead letters with the given ids (those chosen by the command line or
-- the dashboard, by id or by their error). Ids that are no dead letter (any more) are skipped,
-- so a call sent twice changes nothing the second time.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash    counters and flags (see lib.lua)
-- KEYS[3] joined      list    token: "no task is unfinished", for join()
-- KEYS[4] avail       list    token: "there may be an item", for blocked consumers
-- KEYS[5] payloads    hash    item id -> raw value
-- KEYS[6] deliveries  hash    item id -> times delivered
-- KEYS[7] dead        list    item ids of dead letters, newest at the left
-- KEYS[8] errors      hash    item id -> why it is a dead letter
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] "requeue" or "purge"; ARGV[3..] item ids
--
-- Returns the number requeued or deleted.
local kind = ARGV[1]
local requeue = ARGV[2] == 'requeue'
local done = 0
for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call('LREM', KEYS[7], 0, id) > 0 then
        local raw = redis.call('HGET', KEYS[5], id)
        redis.call('HDEL', KEYS[8], id)
        if requeue and raw then
            redis.call('HSET', KEYS[6], id, 0)
            push_new(kind, KEYS[1], make_ref(kind, raw, id .. ':0'))
            done = done + 1
        elseif not requeue then
            redis.call('HDEL', KEYS[5], id)
            redis.call('HDEL', KEYS[6], id)
            done = done + 1
        end
    end
end
if requeue and done > 0 then
    start(KEYS[2], KEYS[3], done)
    redis.call('HSET', KEYS[2], 'leased', '1')  -- they wait as references: see take.lua
    token(KEYS[4])
end
return done
