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
-- ARGV[1] "fifo", "lifo" or "priority"; ARGV[2] "raw" for values taken without a lease (as
-- take.lua returned them), "lease" for lease tokens; ARGV[3..] the values or tokens, in the
-- order they were taken.
--
-- A lease given back is no delivery: its count goes down by one, and the item waits again
-- as a reference to that delivery (see lib.lua). A lease no longer held changes nothing.
-- Returns how many went back.
local kind = ARGV[1]
local back = 0
for i = #ARGV, 3, -1 do
    local value = ARGV[i]
    if ARGV[2] == 'raw' then
        push_next(kind, KEYS[1], value)
        back = back + 1
    elseif redis.call('ZREM', KEYS[3], value) == 1 then
        local id = item_of(value)
        local raw = id and redis.call('HGET', KEYS[5], id)
        if raw then
            if tonumber(redis.call('HINCRBY', KEYS[4], id, -1)) <= 0 then
                redis.call('HDEL', KEYS[4], id)
            end
            push_next(kind, KEYS[1], make_ref(kind, raw, value))
            back = back + 1
        end
    end
end
if back > 0 then
    token(KEYS[2])
end
return back
