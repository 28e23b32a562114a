#!lua
-- Cache compare-and-set: store an item only if the key still holds the item a client read
-- (compared by its SHA-1). Run wrapped (scripts.py), so a retry under the same request id
-- returns the first outcome and writes nothing again.
--
-- KEYS[1]  the cache item
-- KEYS[2]  the request's remembered reply (added by the wrapper; in the item's hash slot)
-- ARGV[1]  the SHA-1, in hex, of the item the client read
-- ARGV[2]  the item to store
-- ARGV[3]  its TTL in milliseconds; "0" for no expiry, "keep" to keep the item's own TTL
--
-- Returns 1 when stored, 0 when the key is missing or holds another item.
local key = KEYS[1]
local expected, item, ttl = ARGV[1], ARGV[2], ARGV[3]

local current = redis.call('GET', key)
if not current or redis.sha1hex(current) ~= expected then
  return 0
end
if ttl == 'keep' then
  redis.call('SET', key, item, 'KEEPTTL')
elseif ttl == '0' then
  redis.call('SET', key, item)
else
  redis.call('SET', key, item, 'PX', ttl)
end
return 1
