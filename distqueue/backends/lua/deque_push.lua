#!lua
-- Add values at one end of a deque, dropping as many from the other end as the deque's maxlen
-- requires (a deque opened with no values only checks and records its maxlen).
--
-- KEYS[1] list   list  the items, left to right
-- KEYS[2] meta   hash  "maxlen" (see lib.lua)
-- KEYS[3] avail  list  token: "there may be an item", for blocked pops
-- ARGV[1] the handle's maxlen (-1: unbounded); ARGV[2] "left" or "right"; ARGV[3..] the
-- payloads, in the order they are added (each "left" one goes before the one added before it)
--
-- Returns the new length, or an error DEQUEMAXLEN if the deque was made with another maxlen.
-- Nothing is written before what can fail (a key of the wrong type) has been checked.
local len = redis.call('LLEN', KEYS[1])
redis.call('LLEN', KEYS[3])
local maxlen = deque_maxlen(KEYS[2], ARGV[1])
if type(maxlen) == 'table' then
    return maxlen
end
if #ARGV < 3 or maxlen == 0 then
    return len
end
local left = ARGV[2] == 'left'
deque_push_all(left and 'LPUSH' or 'RPUSH', KEYS[1], ARGV, 3, #ARGV)
len = len + #ARGV - 2
if maxlen > 0 and len > maxlen then
    if left then
        redis.call('LTRIM', KEYS[1], 0, maxlen - 1)
    else
        redis.call('LTRIM', KEYS[1], len - maxlen, -1)
    end
    len = maxlen
end
token(KEYS[3])
return len
