-- Add items to a priority queue (a Redis sorted set; every score is 0, so members are ordered
-- byte by byte).
--
-- KEYS[1] items       zset    members: sort key .. 8-byte sequence .. payload .. key length
-- KEYS[2] meta        hash    field "shutdown" is set once the queue is shut down
-- KEYS[3] unfinished  string  items put and not yet marked done
-- KEYS[4] notfull     list    token: "there may be room", for blocked producers
-- KEYS[5] joined      list    token: "no task is unfinished", for join()
-- KEYS[6] avail       list    token: "there may be an item", for consumers that lease
-- KEYS[7] seq         string  the last sequence number handed out
-- ARGV[1] maxsize (0 = unbounded), then for each item: its sort key, then its payload.
--
-- The sort key orders items as Python compares them; the sequence number after it keeps items
-- that compare equal first-in-first-out and makes every member unique, so two identical items
-- stay two entries. The trailing key length lets a reader cut the payload out.
--
-- Returns the new size, -1 if the queue is shut down, -2 if there is no room for all items
-- (nothing is written in either case).
local n = (#ARGV - 1) / 2
if redis.call('HEXISTS', KEYS[2], 'shutdown') == 1 then
    return -1
end
local maxsize = tonumber(ARGV[1])
if maxsize > 0 and redis.call('ZCARD', KEYS[1]) + n > maxsize then
    return -2
end

local function be_bytes(value, width)
    local out = {}
    for i = width, 1, -1 do
        out[i] = string.char(value % 256)
        value = math.floor(value / 256)
    end
    return table.concat(out)
end

local seq = redis.call('INCRBY', KEYS[7], n) - n
for i = 2, #ARGV, 2 do
    seq = seq + 1
    local key = ARGV[i]
    redis.call('ZADD', KEYS[1], 0, key .. be_bytes(seq, 8) .. ARGV[i + 1] .. be_bytes(#key, 4))
end
local size = redis.call('ZCARD', KEYS[1])
start(KEYS[3], KEYS[5], n)
token(KEYS[6])
if maxsize > 0 then
    if size >= maxsize then
        redis.call('DEL', KEYS[4])
    else
        token(KEYS[4])
    end
end
return size
