#!lua flags=allow-oom
-- Set a queue's limits, or pause it; either way, wake a blocked consumer to look again.
--
-- KEYS[1] meta   hash  counters and flags (see lib.lua): "limited", "rate", "per", "conc",
--                      "pausedtill"
-- KEYS[2] rate   zset  one member per item taken, scored by when (see take.lua)
-- KEYS[3] avail  list  token: "there may be an item", for blocked consumers
-- ARGV[1] "set": ARGV[2] items per period ("" for no rate limit), ARGV[3] the period in ms,
--                ARGV[4] leases at once ("" for no concurrency limit);
--         "pause": ARGV[2] ms from now during which nothing is taken
--
-- Returns 1.
if ARGV[1] == 'set' then
    redis.call('HDEL', KEYS[1], 'rate', 'per', 'conc')
    redis.call('DEL', KEYS[2])
    if ARGV[2] ~= '' then
        redis.call('HSET', KEYS[1], 'rate', ARGV[2], 'per', ARGV[3])
    end
    if ARGV[4] ~= '' then
        redis.call('HSET', KEYS[1], 'conc', ARGV[4])
    end
else
    local until_ms = now_ms() + tonumber(ARGV[2])
    local paused = tonumber(redis.call('HGET', KEYS[1], 'pausedtill') or '0') or 0
    if until_ms > paused then
        redis.call('HSET', KEYS[1], 'pausedtill', until_ms)
    end
end
if redis.call('HEXISTS', KEYS[1], 'rate') == 1 or redis.call('HEXISTS', KEYS[1], 'conc') == 1
    or redis.call('HEXISTS', KEYS[1], 'pausedtill') == 1 then
    redis.call('HSET', KEYS[1], 'limited', '1')
else
    redis.call('HDEL', KEYS[1], 'limited')
end
token(KEYS[3])
return 1
