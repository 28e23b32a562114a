#!lua flags=allow-oom
-- Remove the item at one index of a deque, moving the shorter side to close the gap.
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] the index (negative: from the right end)
--
-- Returns 1, or 0 when the index is out of range (nothing is written).
local len = redis.call('LLEN', KEYS[1])
redis.call('LLEN', KEYS[2])
local index = tonumber(ARGV[1])
if index < 0 then
    index = index + len
end
if index < 0 or index >= len then
    return 0
end
if index == 0 then
    redis.call('LPOP', KEYS[1])
elseif index == len - 1 then
    redis.call('RPOP', KEYS[1])
elseif index < len - 1 - index then
    local head = redis.call('LRANGE', KEYS[1], 0, index - 1)
    redis.call('LTRIM', KEYS[1], index + 1, -1)
    local moved = deque_reversed(head)
    deque_push_all('LPUSH', KEYS[1], moved, 1, #moved)
else
    local tail = redis.call('LRANGE', KEYS[1], index + 1, -1)
    redis.call('LTRIM', KEYS[1], 0, index - 1)
    deque_push_all('RPUSH', KEYS[1], tail, 1, #tail)
end
deque_avail(KEYS[1], KEYS[2])
return 1
