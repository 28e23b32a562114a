-- Move a payload that cannot be decoded to the queue's dead-letter list. It was taken off the
-- queue, so it counts as done (when any task is unfinished), or join() would wait forever.
--
-- KEYS[1] dead        list    raw payloads that could not be decoded, newest at the left
-- KEYS[2] unfinished  string  items put and not yet marked done
-- KEYS[3] joined      list    at most one token: "no task is unfinished", for join()
-- ARGV[1..] the payloads
--
-- Returns the length of the dead-letter list.
local len = redis.call('LPUSH', KEYS[1], unpack(ARGV))
local unfinished = tonumber(redis.call('GET', KEYS[2]) or '0')
if unfinished > 0 then
    unfinished = math.max(0, unfinished - #ARGV)
    redis.call('SET', KEYS[2], unfinished)
    if unfinished == 0 and redis.call('LLEN', KEYS[3]) == 0 then
        redis.call('LPUSH', KEYS[3], '1')
    end
end
return len
