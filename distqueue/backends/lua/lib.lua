-- Helpers shared by distqueue's scripts; prepended to each script when it is loaded, so every
-- script stays one atomic EVAL. Nothing here touches a key that a script did not declare.
--
-- Stored values: a list element is the payload itself; a sorted-set member is
--   sort key .. sequence (16 hex digits) .. payload .. length of the sort key (8 hex digits)
-- (all scores 0, so Redis orders members byte by byte).
--
-- The queue's "meta" hash holds its counters and flags: "shutdown" once shut down;
-- "unfinished" (items put and not yet marked done); "seq" (the priority queue's last sequence
-- number); "leaseseq" (the last item id or delivery stamp handed out); "fullwait" once a
-- producer found the queue full and "waiting" once a consumer found it empty (only then do the
-- scripts keep the "notfull" and "avail" tokens up to date, which costs every put and get a
-- little); "leased" once an item was leased or requeued from the dead letters (see take.lua);
-- "kind", the kind the queue was made with; "batch", "batchpassed", "batchseen" (refuse_put);
-- "puts" and "gets", the items put and handed out so far (for rates; distqueue.inspection).
-- "scheduled" while items put with a delay wait in "sched" and "schedseq" their last sequence
-- number (see promote); "limited" while a limit is set or a pause runs, with "rate", "per" (ms),
-- "conc" and "pausedtill" (server time, ms) and "grants" (see take.lua). The scripts look at
-- "sched", "rate" and "dedup" only when these flags say so, so a queue that never uses them
-- pays nothing for them.
--
-- Leases. An item gets an id when it is first leased; its raw value is kept in the "payloads"
-- hash under that id until it is done, and "deliveries" counts its deliveries. Each delivery
-- has a lease token, "id:stamp", with a stamp that is never used twice; the "leases" sorted
-- set holds the tokens of the deliveries in progress, scored by their deadline. A leased item
-- that goes back to the queue is stored as a reference, REF .. token, in the payload's place,
-- so that only the holder of that very delivery can still acknowledge it before it is handed
-- out again.
--
-- Replies. A script that changes state is wrapped (see scripts.py) so that a retry of the same
-- call, under the same request id, returns the first call's reply and changes nothing: the
-- reply is kept for a while under a key of the request's own, its last key.

local REF = '\0dq:ref:'

-- Server time in ms, read once per script run (one TIME call, however often it is asked).
local clock_ms = nil
local function now_ms()
    if not clock_ms then
        local t = redis.call('TIME')
        clock_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return clock_ms
end

-- Rate grants (take.lua, giveback.lua): one member of "rate" per item taken, "<n>:<name>",
-- n from meta "grants" (so that members differ) and name the SHA-1 of the item's raw value
-- (so that an item given back can hand back its grant; the value itself where the server's
-- Lua lacks redis.sha1hex).
local function value_name(raw)
    if redis.sha1hex then
        return redis.sha1hex(raw)
    end
    return raw
end

local function grant_member(n, raw)
    return n .. ':' .. value_name(raw)
end

local function grant_name(member)
    return string.sub(member, (string.find(member, ':', 1, true) or 0) + 1)
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

-- The lease token a stored value refers to, or nil when it is an item's own payload.
local function ref_of(kind, value)
    local payload = payload_of(kind, value)
    if payload and string.sub(payload, 1, #REF) == REF then
        return string.sub(payload, #REF + 1)
    end
    return nil
end

-- The stored value that refers to the delivery `token` of an item whose raw value is `raw`.
local function make_ref(kind, raw, token)
    if kind ~= 'priority' then
        return REF .. token
    end
    return string.sub(raw, 1, key_length(raw) + 16) .. REF .. token .. string.sub(raw, -8)
end

-- The item id of a lease token "id:stamp", or nil if `token` is not one.
local function item_of(token)
    return string.match(token, '^(%d+):%d+$')
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

-- A queue keeps the kind it was made with ("fifo", "lifo", "priority") in its meta hash; a
-- handle of another kind is refused (nil: all is well; the kind is recorded the first time).
local function wrong_kind(meta_key, kind, stored)
    if not stored then
        redis.call('HSET', meta_key, 'kind', kind)
        return nil
    end
    if stored ~= kind then
        return redis.error_reply('WRONGKIND the queue is a ' .. stored .. ' queue, not a '
            .. kind .. ' queue')
    end
    return nil
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

-- Leases that ran out go back to the front of the queue (at most `limit` of them), each as a
-- reference to the delivery that lapsed. Returns how many went back.
local function reclaim(kind, items, leases, payloads, now, limit)
    local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
    for i = #expired, 1, -1 do
        local token = expired[i]
        redis.call('ZREM', leases, token)
        local id = item_of(token)
        local raw = id and redis.call('HGET', payloads, id)
        if raw then
            push_next(kind, items, make_ref(kind, raw, token))
        end
    end
    return #expired
end

-- Take a waiting reference to the delivery `token` out of the queue; true if it was there.
local function unqueue_ref(kind, items, payloads, token)
    local id = item_of(token)
    local raw = id and redis.call('HGET', payloads, id)
    if not raw then
        return false
    end
    if kind == 'priority' then
        return redis.call('ZREM', items, make_ref(kind, raw, token)) == 1
    end
    return redis.call('LREM', items, 1, make_ref(kind, raw, token)) == 1
end

-- Whether the delivery `token` is still its holder's: leased (the lease is removed), or lapsed
-- and waiting in the queue, not yet handed out again (it is taken out of the queue).
local function release(kind, items, leases, payloads, token)
    if redis.call('ZREM', leases, token) == 1 then
        return true
    end
    return unqueue_ref(kind, items, payloads, token)
end

-- A reply as remembered: a number, a string, false, or an array of numbers and strings. The
-- server's own MessagePack library does it when there is one (Redis has; some emulators do not).
local msgpack = rawget(_G, 'cmsgpack')

local function pack_one(value)
    if type(value) == 'number' then
        return 'n' .. string.format('%d', value)
    elseif type(value) == 'string' then
        return 's' .. value
    end
    return 'f'
end

local function unpack_one(packed)
    local tag = string.sub(packed, 1, 1)
    if tag == 'n' then
        return tonumber(string.sub(packed, 2))
    elseif tag == 's' then
        return string.sub(packed, 2)
    end
    return false
end

local function pack_reply(reply)
    if msgpack then
        return 'm' .. msgpack.pack(reply)
    end
    if type(reply) ~= 'table' then
        return pack_one(reply)
    end
    local parts = {'t'}
    for _, value in ipairs(reply) do
        local packed = pack_one(value)
        parts[#parts + 1] = #packed .. ':'
        parts[#parts + 1] = packed
    end
    return table.concat(parts)
end

local function unpack_reply(packed)
    local tag = string.sub(packed, 1, 1)
    if tag == 'm' then
        return msgpack.unpack(string.sub(packed, 2))
    elseif tag ~= 't' then
        return unpack_one(packed)
    end
    local out = {}
    local at = 2
    while at <= #packed do
        local colon = string.find(packed, ':', at, true)
        local length = tonumber(string.sub(packed, at, colon - 1))
        out[#out + 1] = unpack_one(string.sub(packed, colon + 1, colon + length))
        at = colon + length + 1
    end
    return out
end

-- What a put script reads of the meta hash first: "shutdown", "fullwait", "waiting", "kind",
-- the counts "unfinished" and "seq", the waiting batch's "batch" (its ticket),
-- "batchpassed" (items put since it began to wait) and "batchseen" (when it last looked, ms),
-- and "scheduled".
local function put_flags(meta_key)
    return redis.call('HMGET', meta_key, 'shutdown', 'fullwait', 'waiting', 'kind', 'unfinished',
        'seq', 'batch', 'batchpassed', 'batchseen', 'scheduled')
end

-- Scheduled items. A member of "sched" (scored by its due time, server time in ms) is the
-- schedule's sequence number in 16 hex digits, then the value as the queue stores it; for a
-- priority queue without its sequence number, which it gets when it enters the queue, so that
-- equal items go by the time they became visible.
local function scheduled_member(kind, seq, value)
    return string.format('%016x', seq) .. value
end

-- The scheduled items due by `now` enter the queue, earliest first (at most `limit`), as new
-- items. Returns how many entered. The "scheduled" flag goes once none is left.
local function promote(kind, items, meta_key, sched, now, limit)
    local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, limit)
    if #due == 0 then
        return 0
    end
    for _, member in ipairs(due) do
        local value = string.sub(member, 17)
        local length = kind == 'priority' and #value >= 8 and key_length(value)
        if length and length + 8 <= #value then
            local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
            value = string.sub(value, 1, length) .. string.format('%016x', seq)
                .. string.sub(value, length + 1)
        end
        push_new(kind, items, value)
    end
    redis.call('ZREM', sched, unpack(due))
    if redis.call('EXISTS', sched) == 0 then
        redis.call('HDEL', meta_key, 'scheduled')
    end
    return #due
end

-- Ms until the earliest scheduled item is due (at least 1), or nil when none is scheduled.
local function until_due(sched, now)
    local first = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
    if #first == 0 then
        return nil
    end
    return math.max(1, tonumber(first[2]) - now)
end

-- A batch that waits longer than this without looking again has given up (or died).
local BATCH_STALE_MS = 3000

-- What a put of `n` items returns instead of adding them, or nil when they may be added: -1 if
-- the queue is shut down, -2 or -3 if they do not fit (see no_room), an error if the queue is
-- of another kind or a count is not a number. Nothing is written unless they may be added,
-- but the fairness bookkeeping below.
--
-- Fairness: a batch that does not fit takes the queue's one batch ticket (when it is free)
-- and keeps it while it looks again. Smaller puts that fit may still go ahead of it, until
-- `maxsize` items have; from then on they wait as if the queue were full, and the room that
-- frees up goes to the batch. `ticket` is the caller's ("" for a single put).
local function refuse_put(kind, items, meta_key, notfull_key, flags, n, maxsize, ticket)
    if flags[1] then
        return -1
    end
    if (flags[5] and not tonumber(flags[5])) or (flags[6] and not tonumber(flags[6])) then
        return redis.error_reply('a count in ' .. meta_key .. ' is not a number')
    end
    local refused = wrong_kind(meta_key, kind, flags[4])
    if refused then
        return refused
    end
    if maxsize <= 0 then
        return nil
    end
    local now = now_ms()
    local holder = flags[7]
    if holder and now - (tonumber(flags[9]) or 0) > BATCH_STALE_MS then
        holder = nil
    end
    local code = no_room(meta_key, notfull_key, size_of(kind, items), n, maxsize)
    if holder == ticket and ticket ~= '' then
        if code then
            redis.call('HSET', meta_key, 'batchseen', now)
            return code
        end
        redis.call('HDEL', meta_key, 'batch', 'batchpassed', 'batchseen')
        return nil
    end
    if holder then
        if code then
            return code
        end
        if (tonumber(flags[8]) or 0) >= maxsize then
            redis.call('HSET', meta_key, 'fullwait', '1')
            return -2  -- the room is the waiting batch's now
        end
        redis.call('HINCRBY', meta_key, 'batchpassed', n)
        return nil
    end
    if code and ticket ~= '' then
        redis.call('HSET', meta_key, 'batch', ticket, 'batchpassed', 0, 'batchseen', now)
    end
    return code
end

-- Deques (distqueue/deques/redis.py): the items in a list; a meta hash whose "maxlen" is the
-- bound every handle must agree on (-1: unbounded); an "avail" token list that blocked pops
-- wait on, holding one token while the list may hold items.

-- The deque's maxlen (a number), recorded the first time; an error reply if `given` (text)
-- is not the one recorded.
local function deque_maxlen(meta_key, given)
    local stored = redis.call('HGET', meta_key, 'maxlen')
    if not stored then
        redis.call('HSET', meta_key, 'maxlen', given)
        return tonumber(given)
    end
    if stored ~= given then
        return redis.error_reply('DEQUEMAXLEN ' .. stored)
    end
    return tonumber(stored)
end

-- values[first..last] pushed with `command` (LPUSH or RPUSH), in pieces unpack() can take.
local function deque_push_all(command, list_key, values, first, last)
    for i = first, last, 4000 do
        redis.call(command, list_key, unpack(values, i, math.min(i + 3999, last)))
    end
end

-- The values of `list` in reverse order.
local function deque_reversed(list)
    local out = {}
    for i = #list, 1, -1 do
        out[#out + 1] = list[i]
    end
    return out
end

-- Leave one "avail" token while the list holds items, none once it is empty.
local function deque_avail(list_key, avail_key)
    if redis.call('LLEN', list_key) > 0 then
        token(avail_key)
    else
        redis.call('DEL', avail_key)
    end
end
