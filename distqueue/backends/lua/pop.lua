-- Remove up to ARGV[2] items from a queue without waiting (get() without leases).
--
-- KEYS[1] items       list or zset
-- KEYS[2] meta        hash    field "shutdown" is set once the queue is shut down
-- KEYS[3] notfull     list    token: "there may be room", for blocked producers
-- KEYS[4] payloads    hash    lease id -> raw value of a leased or redelivered item
-- KEYS[5] deliveries  hash    lease id -> times delivered
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] how many items at most
--
-- Returns the raw values taken (a redelivered item's reference is replaced by its raw value),
-- an empty array if the queue is empty, or -1 if it is empty and shut down.
local kind = ARGV[1]
local want = tonumber(ARGV[2])
local out = {}
while #out < want do
    local value = pop_one(kind, KEYS[1])
    if not value then
        break
    end
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
if #out == 0 then
    if redis.call('HEXISTS', KEYS[2], 'shutdown') == 1 then
        return -1
    end
    return {}
end
token(KEYS[3])
return out
