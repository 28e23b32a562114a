-- Give leased items back: they are delivered again after ARGV[2] ms (0: at once, at the front
-- of the queue). Items whose lease is no longer held are left alone.
--
-- KEYS[1] items       list or zset
-- KEYS[2] avail       list    token: "there may be an item", for consumers that lease
-- KEYS[3] leases      zset    lease id -> deadline
-- KEYS[4] payloads    hash    lease id -> raw value
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] delay in ms; ARGV[3..] lease ids
--
-- Returns how many were given back.
local kind = ARGV[1]
local delay = tonumber(ARGV[2])
local now = now_ms()
local released = 0
for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call('ZSCORE', KEYS[3], id) then
        if delay > 0 then
            redis.call('ZADD', KEYS[3], now + delay, id)
        else
            redis.call('ZREM', KEYS[3], id)
            local raw = redis.call('HGET', KEYS[4], id)
            if raw then
                push_next(kind, KEYS[1], make_ref(kind, raw, id))
            end
        end
        released = released + 1
    end
end
if released > 0 then
    token(KEYS[2])
end
return released
