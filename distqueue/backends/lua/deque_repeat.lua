#!lua
-- Repeat a deque's items in place ARGV[2] times (none when ARGV[2] <= 0), keeping only the
-- last maxlen of them when the deque is bounded.
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] meta   hash  "maxlen" (see lib.lua)
-- KEYS[3] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] the handle's maxlen (-1: unbounded); ARGV[2] the times
--
-- Returns the new length; an error DEQUEMAXLEN if the deque was made with another maxlen, or
-- DEQUETOOLONG if the result would not fit in a Redis list (nothing is written then).
local len = redis.call('LLEN', KEYS[1])
redis.call('LLEN', KEYS[3])
local maxlen = deque_maxlen(KEYS[2], ARGV[1])
if type(maxlen) == 'table' then
    return maxlen
end
local times = tonumber(ARGV[2])
if len == 0 or times == 1 then
    return len
end
if times <= 0 then
    redis.call('DEL', KEYS[1], KEYS[3])
    return 0
end
local total = len * times
local wanted = total
if maxlen >= 0 and maxlen < wanted then
    wanted = maxlen
end
if wanted >= 4294967295 then
    return redis.error_reply('DEQUETOOLONG ' .. string.format('%.0f', total))
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
-- the result is the last `wanted` items of the items repeated `times` times, so it starts at
-- the index (total - wanted) modulo len, which is -wanted modulo len
local position = (len - wanted % len) % len
local piece = {}
for _ = 1, wanted do
    piece[#piece + 1] = items[position + 1]
    position = (position + 1) % len
    if #piece == 4000 then
        redis.call('RPUSH', KEYS[1], unpack(piece))
        piece = {}
    end
end
if #piece > 0 then
    redis.call('RPUSH', KEYS[1], unpack(piece))
end
deque_avail(KEYS[1], KEYS[3])
return wanted
