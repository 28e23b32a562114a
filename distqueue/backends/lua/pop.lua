-- Remove up to ARGV[2] items from a queue without waiting (get() without leases).
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash  counters and flags (see lib.lua)
-- KEYS[3] notfull     list  token: "there may be room", for blocked producers
-- KEYS[4] payloads    hash  lease id -> raw value of a leased, redelivered or dead item
-- KEYS[5] deliveries  hash  lease id -> times delivered
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] how many items at most
--
-- Returns the raw values taken (a redelivered item's reference is replaced by its raw value),
-- an empty array if the queue is empty, or -1 if it is empty and shut down.
local kind = ARGV[1]
local popped
if kind == 'fifo' then
    popped = redis.call('RPOP', KEYS[1], ARGV[2])
elseif kind == 'lifo' then
    popped = redis.call('LPOP', KEYS[1], ARGV[2])
else
    local pairs_ = redis.call('ZPOPMIN', KEYS[1], ARGV[2])
    popped = {}
    for i = 1, #pairs_, 2 do
        popped[#popped + 1] = pairs_[i]
    end
end
if not popped or #popped == 0 then
    if redis.call('HEXISTS', KEYS[2], 'shutdown') == 1 then
        return -1
    end
    return {}
end
if redis.call('EXISTS', KEYS[4]) == 1 then
    -- leases are in use: some values may be references to redelivered items
    local out = {}
    for _, value in ipairs(popped) do
        local id = ref_of(kind, value)
        if id then
            value = redis.call('HGET', KEYS[4], id)
            redis.call('HDEL', KEYS[4], id)
            redis.call('HDEL', KEYS[5], id)
        end
        if value then
            out[#out + 1] = value
        end
    end
    popped = out
end
if redis.call('HEXISTS', KEYS[2], 'fullwait') == 1 then
    token(KEYS[3])
end
return popped
