-- Lease up to ARGV[4] items: take them off the queue into "leases", from where they are
-- acknowledged (ack.lua) or, once their lease runs out, delivered again.
--
-- KEYS[1]  items       list or zset
-- KEYS[2]  meta        hash  counters and flags (see lib.lua)
-- KEYS[3]  notfull     list  token: "there may be room", for blocked producers
-- KEYS[4]  joined      list  token: "no task is unfinished", for join()
-- KEYS[5]  avail       list  token: "there may be an item", for consumers that lease
-- KEYS[6]  leases      zset  lease id -> deadline (server time, ms)
-- KEYS[7]  payloads    hash  lease id -> raw value
-- KEYS[8]  deliveries  hash  lease id -> times delivered
-- KEYS[9]  dead        list  lease ids of dead letters, newest at the left
-- KEYS[10] errors      hash  lease id -> why it is a dead letter
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] lease length in ms; ARGV[3] max deliveries;
-- ARGV[4] how many items at most
--
-- First, leases that ran out go back to the front of the queue (at most 100 per call). An item
-- about to be delivered more than max deliveries times becomes a dead letter instead.
-- Returns {id1, raw1, deliveries1, id2, ...}; when nothing could be leased: -1 if the queue is
-- shut down, else the ms until the earliest lease runs out, or -2 if no item is leased.
local kind = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local max_deliveries = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local now = now_ms()

local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 100)
for i = #expired, 1, -1 do
    local id = expired[i]
    redis.call('ZREM', KEYS[6], id)
    local raw = redis.call('HGET', KEYS[7], id)
    if raw then
        push_next(kind, KEYS[1], make_ref(kind, raw, id))
    end
end

local out = {}
local dead = 0
while #out < want * 3 do
    local value = pop_one(kind, KEYS[1])
    if not value then
        break
    end
    local id = ref_of(kind, value)
    local raw
    if id then
        raw = redis.call('HGET', KEYS[7], id)
    else
        id = tostring(redis.call('HINCRBY', KEYS[2], 'leaseseq', 1))
        raw = value
        redis.call('HSET', KEYS[7], id, raw)
    end
    if raw then
        local n = redis.call('HINCRBY', KEYS[8], id, 1)
        if n > max_deliveries then
            redis.call('HINCRBY', KEYS[8], id, -1)
            redis.call('HSET', KEYS[10], id,
                'delivered ' .. (n - 1) .. ' times and never acknowledged (max_deliveries '
                .. max_deliveries .. ')')
            redis.call('LPUSH', KEYS[9], id)
            dead = dead + 1
        else
            redis.call('ZADD', KEYS[6], now + lease_ms, id)
            out[#out + 1] = id
            out[#out + 1] = raw
            out[#out + 1] = n
        end
    end
end
finish(KEYS[2], KEYS[4], dead)

if #out > 0 then
    if redis.call('HEXISTS', KEYS[2], 'fullwait') == 1 then
        token(KEYS[3])
    end
    if size_of(kind, KEYS[1]) > 0 then
        token(KEYS[5])
    end
    return out
end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[2], 'leasewait', '1')
if redis.call('HEXISTS', KEYS[2], 'shutdown') == 1 then
    return -1
end
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if #first == 0 then
    return -2
end
return math.max(1, tonumber(first[2]) - now)
