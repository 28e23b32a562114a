#!lua flags=no-writes
-- The index of the first item of a deque whose payload is ARGV[1], looking at indexes from
-- ARGV[2] up to (not including) ARGV[3], both taken as a slice's bounds are: negative counts
-- from the right end, and both are clipped to the deque.
--
-- KEYS[1] list  list  the items, left to right
--
-- Returns the index, or -1 when no item in that range has the payload.
local len = redis.call('LLEN', KEYS[1])
local first = tonumber(ARGV[2])
local stop = tonumber(ARGV[3])
if first < 0 then
    first = math.max(0, first + len)
end
if stop < 0 then
    stop = math.max(0, stop + len)
end
stop = math.min(stop, len)
while first < stop do
    local last = math.min(first + 1000, stop) - 1
    local page = redis.call('LRANGE', KEYS[1], first, last)
    for i, value in ipairs(page) do
        if value == ARGV[1] then
            return first + i - 1
        end
    end
    first = last + 1
end
return -1
