#!lua flags=allow-oom
-- Give back items that were taken and never reached a consumer (its call was cancelled while
-- the take was under way): each goes back where the next get takes from, in the order taken,
-- as if it had never left. Their tasks stay unfinished, as they were.
--
-- KEYS[1] items       list or zset
-- KEYS[2] avail       list  token: "there may be an item", for blocked consumers
-- KEYS[3] leases      zset  lease token -> deadline
-- KEYS[4] deliveries  hash  item id -> times delivered
-- KEYS[5] payloads    hash  item id -> raw value
-- KEYS[6] meta        hash  counters and flags ("per": the rate limit's period in ms)
-- KEYS[7] rate        zset  one member per item taken, scored by when (see take.lua)
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] "raw" for values taken without a lease (as
-- take.lua returned them), "lease" for lease tokens; ARGV[3..] the values or tokens, in the
-- order they were taken.
--
-- A lease given back is no delivery: its count goes down by one, and the item waits again
-- as a reference to that delivery (see lib.lua). A lease no longer held changes nothing.
-- Under a rate limit, each item given back hands back the grant its take used, so a take
-- that reached nobody uses up none of the rate: the oldest grant still counted that names
-- the same value (values put twice may share a name; taking the oldest never frees more
-- than its own grant would have). Returns how many went back.
local kind = ARGV[1]
local back = 0
local grants = nil  -- value name -> members of grants naming it, oldest first
local function hand_back_grant(raw)
    if not grants then
        grants = {}
        if redis.call('EXISTS', KEYS[7]) == 1 then
            local per = tonumber(redis.call('HGET', KEYS[6], 'per')) or 1000
            local counted = redis.call('ZRANGEBYSCORE', KEYS[7], now_ms() - per, '+inf')
            for _, member in ipairs(counted) do
                local name = grant_name(member)
                local list = grants[name]
                if not list then
                    list = {}
                    grants[name] = list
                end
                list[#list + 1] = member
            end
        end
    end
    local list = grants[value_name(raw)]
    if list and #list > 0 then
        redis.call('ZREM', KEYS[7], table.remove(list, 1))
    end
end
for i = #ARGV, 3, -1 do
    local value = ARGV[i]
    if ARGV[2] == 'raw' then
        push_next(kind, KEYS[1], value)
        hand_back_grant(value)
        back = back + 1
    elseif redis.call('ZREM', KEYS[3], value) == 1 then
        local id = item_of(value)
        local raw = id and redis.call('HGET', KEYS[5], id)
        if raw then
            if tonumber(redis.call('HINCRBY', KEYS[4], id, -1)) <= 0 then
                redis.call('HDEL', KEYS[4], id)
            end
            push_next(kind, KEYS[1], make_ref(kind, raw, value))
            hand_back_grant(raw)
            back = back + 1
        end
    end
end
if back > 0 then
    token(KEYS[2])
end
return back
