#!lua
-- Replace the item at one index of a deque.
--
-- KEYS[1] list  list  the items, left to right
-- ARGV[1] the index (negative: from the right end); ARGV[2] the new payload
--
-- Returns 1, or 0 when the index is out of range (nothing is written).
local len = redis.call('LLEN', KEYS[1])
local index = tonumber(ARGV[1])
if index < 0 then
    index = index + len
end
if index < 0 or index >= len then
    return 0
end
redis.call('LSET', KEYS[1], index, ARGV[2])
return 1
