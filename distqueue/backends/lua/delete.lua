#!lua flags=allow-oom
-- Delete a queue and everything it holds, and wake the producers and join() callers blocked
-- on it: they go on with the fresh, empty queue the name now stands for (consumers simply keep
-- waiting there). The wake-up tokens are left with a short TTL, so nothing stays for long.
--
-- KEYS[1] notfull  list  token: "there may be room", for blocked producers
-- KEYS[2] joined   list  token: "no task is unfinished", for join()
-- KEYS[3..] every other key of the queue
--
-- Returns the number of keys deleted.
local deleted = redis.call('DEL', unpack(KEYS))
for i = 1, 2 do
    redis.call('LPUSH', KEYS[i], '1')
    redis.call('PEXPIRE', KEYS[i], 5000)
end
return deleted
