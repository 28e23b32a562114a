#!lua flags=allow-oom
-- Take up to ARGV[2] items, in the order get() hands them out: without a lease (ARGV[3] = 0)
-- they leave the queue; with one they move to "leases", from where they are acknowledged
-- (ack.lua) or, once the lease runs out, delivered again.
--
-- KEYS[1]  items       list or zset
-- KEYS[2]  meta        hash  counters and flags (see lib.lua)
-- KEYS[3]  notfull     list  token: "there may be room", for blocked producers
-- KEYS[4]  joined      list  token: "no task is unfinished", for join()
-- KEYS[5]  avail       list  token: "there may be an item", for blocked consumers
-- KEYS[6]  leases      zset  lease token -> deadline (server time, ms)
-- KEYS[7]  payloads    hash  item id -> raw value
-- KEYS[8]  deliveries  hash  item id -> times delivered
-- KEYS[9]  dead        list  item ids of dead letters, newest at the left
-- KEYS[10] errors      hash  item id -> why it is a dead letter
-- KEYS[11] sched       zset  items put with a delay, by due time (see promote in lib.lua)
-- KEYS[12] rate        zset  one member per item taken (grant_member in lib.lua), scored by when
--                            (server time, ms)
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] how many items at most;
-- ARGV[3] lease length in ms, 0 for none; ARGV[4] max deliveries
--
-- First, leases that ran out go back to the front of the queue (at most 100 per call), for
-- every consumer, leasing or not. Under a lease, an item about to be delivered more than max
-- deliveries times becomes a dead letter instead. Scheduled items that are due enter the queue
-- first (see promote in lib.lua).
--
-- Limits (meta "limited"): a pause ("pausedtill") lets nothing be taken; a rate ("rate" items
-- per "per" ms) counts the items taken in the last "per" ms in "rate"; a concurrency ("conc")
-- caps the leases held at once.
--
-- Returns, when items were taken: {raw1, raw2, ...} without a lease, {token1, raw1,
-- deliveries1, token2, ...} with one; when none was: -1 if the queue is shut down and nothing
-- is left to come, else the ms until the next look may find one (the earliest lease runs out,
-- a scheduled item is due, a limit lets go), or -2 if nothing of that kind is pending.
local kind = ARGV[1]
local want = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local max_deliveries = tonumber(ARGV[4])
local flags = redis.call('HMGET', KEYS[2], 'shutdown', 'fullwait', 'waiting', 'kind', 'leased',
    'scheduled', 'limited')
local refused = wrong_kind(KEYS[2], kind, flags[4])
if refused then
    return refused
end
-- "leased": items of this queue have been leased (or requeued from the dead letters), so some
-- may wait as references, and leases may have run out. A queue never leased skips all that.
local leased = flags[5] or lease_ms > 0
if leased then
    reclaim(kind, KEYS[1], KEYS[6], KEYS[7], now_ms(), 100)
    if not flags[5] then
        redis.call('HSET', KEYS[2], 'leased', '1')
    end
end
if flags[6] then
    promote(kind, KEYS[1], KEYS[2], KEYS[11], now_ms(), 1000)
end

-- How many the limits allow now, and if none, in how many ms that may change (nil: when a
-- lease ends).
local held_for = nil
local counted = false  -- whether a rate limit counts the items taken
if flags[7] then
    local now = now_ms()
    local limits = redis.call('HMGET', KEYS[2], 'pausedtill', 'rate', 'per', 'conc')
    local paused = tonumber(limits[1])
    if paused and paused > now then
        want = 0
        held_for = paused - now
    else
        if paused then
            redis.call('HDEL', KEYS[2], 'pausedtill')
            if not limits[2] and not limits[4] then
                redis.call('HDEL', KEYS[2], 'limited')
            end
        end
        local rate = tonumber(limits[2])
        if rate then
            counted = true
            local per = tonumber(limits[3]) or 1000
            redis.call('ZREMRANGEBYSCORE', KEYS[12], '-inf', now - per)
            want = math.min(want, rate - redis.call('ZCARD', KEYS[12]))
            if want <= 0 then
                local oldest = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
                held_for = #oldest > 0 and math.max(1, tonumber(oldest[2]) + per - now) or 1
            end
        end
        local conc = tonumber(limits[4])
        if conc and lease_ms > 0 and want > 0 then
            want = math.min(want, conc - redis.call('ZCARD', KEYS[6]))
        end
    end
    want = math.max(0, want)
end

local out = {}
local dead = 0
if want == 0 then
    -- held back by a limit: nothing is taken
elseif lease_ms == 0 then
    local popped
    if kind == 'fifo' then
        popped = redis.call('RPOP', KEYS[1], want)
    elseif kind == 'lifo' then
        popped = redis.call('LPOP', KEYS[1], want)
    else
        local pairs_ = redis.call('ZPOPMIN', KEYS[1], want)
        popped = {}
        for i = 1, #pairs_, 2 do
            popped[#popped + 1] = pairs_[i]
        end
    end
    if popped and leased and redis.call('EXISTS', KEYS[7]) == 1 then
        -- leases are in use: some values may be references to items delivered before
        for _, value in ipairs(popped) do
            local token = ref_of(kind, value)
            if token then
                local id = item_of(token)
                value = id and redis.call('HGET', KEYS[7], id)
                if id then
                    redis.call('HDEL', KEYS[7], id)
                    redis.call('HDEL', KEYS[8], id)
                end
            end
            if value then
                out[#out + 1] = value
            end
        end
    elseif popped then
        out = popped
    end
else
    local taken = 0
    while taken < want do
        local value = pop_one(kind, KEYS[1])
        if not value then
            break
        end
        local id = nil
        local raw = value
        local token = ref_of(kind, value)
        if token then
            id = item_of(token)
            raw = id and redis.call('HGET', KEYS[7], id)
        else
            id = tostring(redis.call('HINCRBY', KEYS[2], 'leaseseq', 1))
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
                local lease = id .. ':' .. redis.call('HINCRBY', KEYS[2], 'leaseseq', 1)
                redis.call('ZADD', KEYS[6], now_ms() + lease_ms, lease)
                out[#out + 1] = lease
                out[#out + 1] = raw
                out[#out + 1] = n
                taken = taken + 1
            end
        end
    end
    finish(KEYS[2], KEYS[4], dead)
end

local taken_n = lease_ms == 0 and #out or #out / 3
if counted and taken_n > 0 then
    -- a grant names its item's value (see giveback.lua, which hands grants back)
    local grants = {}
    local last = redis.call('HINCRBY', KEYS[2], 'grants', taken_n)
    local step = lease_ms == 0 and 1 or 3
    local offset = lease_ms == 0 and 0 or 1
    for i = 1, taken_n do
        grants[#grants + 1] = now_ms()
        grants[#grants + 1] = grant_member(last - taken_n + i, out[(i - 1) * step + 1 + offset])
    end
    redis.call('ZADD', KEYS[12], unpack(grants))
end
if #out > 0 then
    -- for the get rate (distqueue stats): deliveries, redeliveries included
    redis.call('HINCRBY', KEYS[2], 'gets', lease_ms == 0 and #out or #out / 3)
    if flags[2] then
        token(KEYS[3])
    end
    if flags[3] and size_of(kind, KEYS[1]) > 0 then
        token(KEYS[5])  -- more items: wake the next blocked consumer too
    end
    return out
end
if dead > 0 and flags[2] then
    token(KEYS[3])
end
redis.call('DEL', KEYS[5])
if not flags[3] then
    redis.call('HSET', KEYS[2], 'waiting', '1')
end
local due = flags[6] and until_due(KEYS[11], now_ms())
if flags[1] and not due and size_of(kind, KEYS[1]) == 0 then
    return -1
end
local wait = held_for or due
if held_for and due then
    wait = math.min(held_for, due)
end
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if #first > 0 then
    local lapse = math.max(1, tonumber(first[2]) - now_ms())
    wait = wait and math.min(wait, lapse) or lapse
end
return wait or -2
