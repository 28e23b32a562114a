#!lua flags=allow-oom
-- Rotate a deque ARGV[1] steps to the right (to the left when negative): the last items move
-- to the front. Only the shorter side is moved.
--
-- KEYS[1] list  list  the items, left to right
-- ARGV[1] the steps, as decimal digits with an optional "-" (any size: reduced modulo the
-- length digit by digit, so no precision is lost)
--
-- Returns the steps taken to the right, between 0 and length - 1.
local len = redis.call('LLEN', KEYS[1])
if len < 2 then
    return 0
end
local text = ARGV[1]
local negative = string.sub(text, 1, 1) == '-'
local steps = 0
for i = negative and 2 or 1, #text do
    steps = (steps * 10 + tonumber(string.sub(text, i, i))) % len
end
if negative and steps > 0 then
    steps = len - steps
end
if steps == 0 then
    return 0
end
if steps <= len - steps then
    local tail = redis.call('LRANGE', KEYS[1], len - steps, -1)
    redis.call('LTRIM', KEYS[1], 0, len - steps - 1)
    local moved = deque_reversed(tail)
    deque_push_all('LPUSH', KEYS[1], moved, 1, #moved)
else
    local head = redis.call('LRANGE', KEYS[1], 0, len - steps - 1)
    redis.call('LTRIM', KEYS[1], len - steps, -1)
    deque_push_all('RPUSH', KEYS[1], head, 1, #head)
end
return steps
