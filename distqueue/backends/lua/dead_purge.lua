#!lua flags=allow-oom
-- Delete dead letters for good, oldest first.
--
-- KEYS[1] payloads    hash  item id -> raw value
-- KEYS[2] deliveries  hash  item id -> times delivered
-- KEYS[3] dead        list  item ids of dead letters, newest at the left
-- KEYS[4] errors      hash  item id -> why it is a dead letter
-- ARGV[1] how many at most
--
-- Returns the number deleted.
local purged = 0
for _ = 1, tonumber(ARGV[1]) do
    local id = redis.call('RPOP', KEYS[3])
    if not id then
        break
    end
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    purged = purged + 1
end
return purged
