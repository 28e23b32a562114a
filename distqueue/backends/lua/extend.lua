-- Extend leases that are still held to ARGV[1] ms from now (the heartbeat of a live consumer).
--
-- KEYS[1] leases  zset  lease id -> deadline
-- ARGV[1] lease length in ms; ARGV[2..] lease ids
--
-- Returns how many leases were extended (a lease that ran out and was given to another
-- consumer's queue slot is not).
local deadline = now_ms() + tonumber(ARGV[1])
local extended = 0
for i = 2, #ARGV do
    extended = extended + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
end
return extended
