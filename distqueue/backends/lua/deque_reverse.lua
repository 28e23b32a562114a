#!lua flags=allow-oom
-- Reverse the order of a deque's items in place.
--
-- KEYS[1] list  list  the items, left to right
--
-- Returns the length.
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items < 2 then
    return #items
end
redis.call('DEL', KEYS[1])
-- LPUSH of the items in their order leaves the last one first
deque_push_all('LPUSH', KEYS[1], items, 1, #items)
return #items
