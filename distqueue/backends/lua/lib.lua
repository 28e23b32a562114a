-- Helpers shared by distqueue's scripts; prepended to each script when it is loaded, so every
-- script stays one atomic EVAL. Nothing here touches a key that a script did not declare.
--
-- Stored values: a list element is the payload itself; a sorted-set member is
--   sort key .. sequence (16 hex digits) .. payload .. length of the sort key (8 hex digits)
-- (all scores 0, so Redis orders members byte by byte).
--
-- The queue's "meta" hash holds its counters and flags: "shutdown" once shut down;
-- "unfinished" (items put and not yet marked done); "seq" (the priority queue's last sequence
-- number); "leaseseq" (the last lease id); "fullwait" once a producer found the queue full and
-- "leasewait" once a leasing consumer found it empty (only then do the scripts keep the
-- "notfull" and "avail" tokens up to date, which costs every put and get a little).
-- A leased item that goes back to the queue is stored as a reference, REF .. lease id, in the
-- payload's place; the raw value stays in the queue's "payloads" hash under its lease id.

local REF = '\0dq:ref:'

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function key_length(member)
    return tonumber(string.sub(member, -8), 16)
end

-- The payload part of a stored value, or nil for a sorted-set member too short to be ours.
local function payload_of(kind, value)
    if kind ~= 'priority' then
        return value
    end
    local length = #value >= 24 and key_length(value)
    if not length or length + 24 > #value then
        return nil
    end
    return string.sub(value, length + 17, -9)
end

-- The lease id a stored value refers to, or nil when it is an item's own payload.
local function ref_of(kind, value)
    local payload = payload_of(kind, value)
    if payload and string.sub(payload, 1, #REF) == REF then
        return string.sub(payload, #REF + 1)
    end
    return nil
end

-- The stored value that refers to lease `id`, whose raw value is `raw`.
local function make_ref(kind, raw, id)
    if kind ~= 'priority' then
        return REF .. id
    end
    return string.sub(raw, 1, key_length(raw) + 16) .. REF .. id .. string.sub(raw, -8)
end

-- Put a value where consumers take the next item from (redelivery comes first).
local function push_next(kind, items, value)
    if kind == 'fifo' then
        redis.call('RPUSH', items, value)
    elseif kind == 'lifo' then
        redis.call('LPUSH', items, value)
    else
        redis.call('ZADD', items, 0, value)
    end
end

-- Put a value where a new item enters.
local function push_new(kind, items, value)
    if kind == 'priority' then
        redis.call('ZADD', items, 0, value)
    else
        redis.call('LPUSH', items, value)
    end
end

local function pop_one(kind, items)
    if kind == 'fifo' then
        return redis.call('RPOP', items)
    elseif kind == 'lifo' then
        return redis.call('LPOP', items)
    end
    local popped = redis.call('ZPOPMIN', items)
    if #popped == 0 then
        return false
    end
    return popped[1]
end

local function size_of(kind, items)
    if kind == 'priority' then
        return redis.call('ZCARD', items)
    end
    return redis.call('LLEN', items)
end

-- Leave one token in a token list (never more).
local function token(key)
    if redis.call('LLEN', key) == 0 then
        redis.call('LPUSH', key, '1')
    end
end

local function unfinished_of(meta_key)
    return tonumber(redis.call('HGET', meta_key, 'unfinished') or '0')
end

-- `n` tasks left the queue for good (acknowledged, dead-lettered, dropped).
local function finish(meta_key, joined_key, n)
    local unfinished = unfinished_of(meta_key)
    if unfinished <= 0 or n <= 0 then
        return
    end
    unfinished = math.max(0, unfinished - n)
    redis.call('HSET', meta_key, 'unfinished', unfinished)
    if unfinished == 0 then
        token(joined_key)
    end
end

-- `n` tasks entered the queue.
local function start(meta_key, joined_key, n)
    if redis.call('HINCRBY', meta_key, 'unfinished', n) == n then
        redis.call('DEL', joined_key)
    end
end

-- The code a put script returns when `n` more items do not fit (-2: the queue is full; -3: some
-- room, not enough for all of them, which is left to smaller puts), or nil when they fit.
local function no_room(meta_key, notfull_key, size, n, maxsize)
    if size + n <= maxsize then
        return nil
    end
    redis.call('HSET', meta_key, 'fullwait', '1')
    if size < maxsize then
        token(notfull_key)
        return -3
    end
    return -2
end
