-- After a blocking pop outside a script took a redelivered item's reference: take its raw value.
--
-- KEYS[1] payloads    hash  lease id -> raw value
-- KEYS[2] deliveries  hash  lease id -> times delivered
-- ARGV[1] the lease id
--
-- Returns the raw value, or nil if the item was acknowledged meanwhile.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return raw
