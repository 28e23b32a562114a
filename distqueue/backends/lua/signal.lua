-- After a blocking pop outside a script: tell producers there is room, and hand the shutdown
-- token on to the next blocked client if the pop consumed it.
--
-- KEYS[1] meta      hash  field "shutdown" is set once the queue is shut down
-- KEYS[2] notfull   list  token: "there may be room"
-- KEYS[3] shutdown  list  the shutdown token producers, join() and leasing consumers block on
-- KEYS[4] shutdownz zset  the shutdown token consumers of a priority queue block on
-- ARGV[1] "room" after taking an item, "shutdown" after taking the shutdown token
--
-- Returns 1 if the queue is shut down, else 0.
if ARGV[1] == 'room' and redis.call('HEXISTS', KEYS[1], 'fullwait') == 1 then
    token(KEYS[2])
end
if redis.call('HEXISTS', KEYS[1], 'shutdown') == 1 then
    token(KEYS[3])
    redis.call('ZADD', KEYS[4], 0, 'shutdown')
    return 1
end
return 0
