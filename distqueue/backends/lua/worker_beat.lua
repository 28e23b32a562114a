#!lua
-- A worker's heartbeat in the registry of the server: its description, kept for a TTL that
-- each beat renews, and its place in the index of workers. A worker that stops beating
-- disappears by itself: its description expires, and the next beat of any worker drops its
-- index entry.
--
-- KEYS[1] workers  zset    worker id -> when its description expires (server time, ms)
-- KEYS[2] worker   string  the worker's description (JSON), with a TTL
-- ARGV[1] the worker's id; ARGV[2] the TTL in ms; ARGV[3] the description, or "" to leave
--
-- Returns 1 after a beat, 0 after leaving.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '' then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('DEL', KEYS[2])
    return 0
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
return 1
