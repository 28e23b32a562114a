-- Make items dead letters: leased items by lease id, or raw values taken without a lease.
-- They leave the queue (each counts as done) and keep their raw value, delivery count and error.
--
-- KEYS[1] meta        hash  counters and flags (see lib.lua)
-- KEYS[2] joined      list  token: "no task is unfinished", for join()
-- KEYS[3] leases      zset  lease id -> deadline
-- KEYS[4] payloads    hash  lease id -> raw value
-- KEYS[5] deliveries  hash  lease id -> times delivered
-- KEYS[6] dead        list  lease ids of dead letters, newest at the left
-- KEYS[7] errors      hash  lease id -> why it is a dead letter
-- ARGV[1] "ids" or "raw"; ARGV[2] the error; ARGV[3..] lease ids or raw values
--
-- Returns the number of items made dead letters.
local moved = 0
for i = 3, #ARGV do
    local id
    if ARGV[1] == 'raw' then
        id = tostring(redis.call('HINCRBY', KEYS[1], 'leaseseq', 1))
        redis.call('HSET', KEYS[4], id, ARGV[i])
        redis.call('HSET', KEYS[5], id, 1)
    else
        id = ARGV[i]
        redis.call('ZREM', KEYS[3], id)
        if redis.call('HEXISTS', KEYS[4], id) == 0 then
            id = nil
        end
    end
    if id then
        redis.call('HSET', KEYS[7], id, ARGV[2])
        redis.call('LPUSH', KEYS[6], id)
        moved = moved + 1
    end
end
finish(KEYS[1], KEYS[2], moved)
return moved
