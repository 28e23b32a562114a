#!lua flags=allow-oom
-- Give leased items back: they are delivered again after ARGV[2] ms (0: at once, at the front
-- of the queue). Tokens whose delivery is over change nothing.
--
-- KEYS[1] items       list or zset
-- KEYS[2] avail       list    token: "there may be an item", for blocked consumers
-- KEYS[3] leases      zset    lease token -> deadline
-- KEYS[4] payloads    hash    item id -> raw value
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] delay in ms; ARGV[3..] lease tokens
--
-- Returns how many were given back.
local kind = ARGV[1]
local delay = tonumber(ARGV[2])
local now = now_ms()
local released = 0
for i = 3, #ARGV do
    local lease = ARGV[i]
    if redis.call('ZSCORE', KEYS[3], lease) then
        if delay > 0 then
            -- kept as a lease that runs out then: the item comes back by the usual way
            redis.call('ZADD', KEYS[3], now + delay, lease)
        else
            redis.call('ZREM', KEYS[3], lease)
            local raw = redis.call('HGET', KEYS[4], item_of(lease) or '')
            if raw then
                push_next(kind, KEYS[1], make_ref(kind, raw, lease))
            end
        end
        released = released + 1
    end
end
if released > 0 then
    token(KEYS[2])
end
return released
