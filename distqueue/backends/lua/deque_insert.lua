#!lua
-- Insert an item before one index of a deque (after the last item when the index is past the
-- end, at the front when it is before the start), moving the shorter side to make room.
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] meta   hash  "maxlen" (see lib.lua)
-- KEYS[3] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] the handle's maxlen (-1: unbounded); ARGV[2] the index (negative: from the right
-- end); ARGV[3] the payload
--
-- Returns the new length; -1 when the deque already holds maxlen items (nothing is written);
-- an error DEQUEMAXLEN if the deque was made with another maxlen.
local len = redis.call('LLEN', KEYS[1])
redis.call('LLEN', KEYS[3])
local maxlen = deque_maxlen(KEYS[2], ARGV[1])
if type(maxlen) == 'table' then
    return maxlen
end
if len == maxlen then
    return -1
end
local index = tonumber(ARGV[2])
if index < 0 then
    index = math.max(0, index + len)
end
if index >= len then
    redis.call('RPUSH', KEYS[1], ARGV[3])
elseif index == 0 then
    redis.call('LPUSH', KEYS[1], ARGV[3])
elseif index <= len - index then
    local head = redis.call('LRANGE', KEYS[1], 0, index - 1)
    redis.call('LTRIM', KEYS[1], index, -1)
    redis.call('LPUSH', KEYS[1], ARGV[3])
    local moved = deque_reversed(head)
    deque_push_all('LPUSH', KEYS[1], moved, 1, #moved)
else
    local tail = redis.call('LRANGE', KEYS[1], index, -1)
    redis.call('LTRIM', KEYS[1], 0, index - 1)
    redis.call('RPUSH', KEYS[1], ARGV[3])
    deque_push_all('RPUSH', KEYS[1], tail, 1, #tail)
end
token(KEYS[3])
return len + 1
