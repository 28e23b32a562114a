#!lua flags=allow-oom
-- Make items dead letters: leased items by lease token, or raw values taken without a lease.
-- They leave the queue and keep their raw value, delivery count and error. They count as done
-- when ARGV[2] is "1"; a payload that cannot be decoded was not put by this queue's producers
-- (it was pushed by hand, say) and was never counted, so it is not counted as done either.
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua)
-- KEYS[3] joined      list  token: "no task is unfinished", for join()
-- KEYS[4] leases      zset  lease token -> deadline
-- KEYS[5] payloads    hash  item id -> raw value
-- KEYS[6] deliveries  hash  item id -> times delivered
-- KEYS[7] dead        list  item ids of dead letters, newest at the left
-- KEYS[8] errors      hash  item id -> why it is a dead letter
-- ARGV[1] "fifo", "lifo", "priority" for lease tokens, "raw" for raw values;
-- ARGV[2] "1" if they count as done; ARGV[3] the error; ARGV[4..] tokens or raw values
--
-- Returns the number of items made dead letters.
local moved = 0
for i = 4, #ARGV do
    local id = nil
    if ARGV[1] == 'raw' then
        id = tostring(redis.call('HINCRBY', KEYS[2], 'leaseseq', 1))
        redis.call('HSET', KEYS[5], id, ARGV[i])
        redis.call('HSET', KEYS[6], id, 1)
    elseif release(ARGV[1], KEYS[1], KEYS[4], KEYS[5], ARGV[i]) then
        id = item_of(ARGV[i])
    end
    if id then
        redis.call('HSET', KEYS[8], id, ARGV[3])
        redis.call('LPUSH', KEYS[7], id)
        moved = moved + 1
    end
end
if ARGV[2] == '1' then
    finish(KEYS[2], KEYS[3], moved)
end
return moved
