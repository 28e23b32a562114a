#!lua flags=allow-oom
-- Renew leases still in progress to ARGV[1] ms from now (the heartbeat of a live consumer).
--
-- KEYS[1] leases  zset  lease token -> deadline
-- ARGV[1] lease length in ms; ARGV[2..] lease tokens
--
-- Returns how many leases were renewed: a lease that ran out is not, even before its item is
-- handed out again (its holder was too late; the item will be delivered again).
local deadline = now_ms() + tonumber(ARGV[1])
local extended = 0
for i = 2, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
        extended = extended + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
    end
end
return extended
