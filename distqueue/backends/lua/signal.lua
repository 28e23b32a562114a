-- After a blocking pop outside a script: tell producers there is room, and hand the shutdown
-- token on to the next blocked client if the pop consumed it.
--
-- KEYS[1] meta      hash  field "shutdown" is set once the queue is shut down
-- KEYS[2] notfull   list  at most one token: "there may be room"
-- KEYS[3] shutdown  list  the shutdown token producers and join() block on
-- KEYS[4] shutdownz zset  the shutdown token consumers of a priority queue block on
-- ARGV[1] "room" after taking an item, "shutdown" after taking the shutdown token
--
-- Returns 1 if the queue is shut down, else 0.
if ARGV[1] == 'room' then
    if redis.call('LLEN', KEYS[2]) == 0 then
        redis.call('LPUSH', KEYS[2], '1')
    end
end
if redis.call('HEXISTS', KEYS[1], 'shutdown') == 1 then
    if redis.call('LLEN', KEYS[3]) == 0 then
        redis.call('LPUSH', KEYS[3], '1')
    end
    redis.call('ZADD', KEYS[4], 0, 'shutdown')
    return 1
end
return 0
