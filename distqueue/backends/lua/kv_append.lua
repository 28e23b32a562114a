#!lua
-- Cache append and prepend, on an item that holds a bytes value as it is (first byte "b", see
-- distqueue/kv/frames.py); the item keeps its TTL. Run wrapped (scripts.py), so a retry under
-- the same request id returns the first outcome and adds nothing again.
--
-- KEYS[1]  the cache item
-- KEYS[2]  the request's remembered reply (added by the wrapper; in the item's hash slot)
-- ARGV[1]  "append" or "prepend"
-- ARGV[2]  the bytes to add
--
-- Returns 1 when added, 0 when the key is missing, -1 (nothing changed) when the item is not a
-- plain bytes value: the client then reads the value itself (compressed, chunked, or not bytes
-- at all) and decides.
local key = KEYS[1]
local op, data = ARGV[1], ARGV[2]

local current = redis.call('GET', key)
if not current then
  return 0
end
if string.sub(current, 1, 1) ~= 'b' then
  return -1
end
if op == 'append' then
  redis.call('APPEND', key, data)
else
  redis.call('SET', key, 'b' .. data .. string.sub(current, 2), 'KEEPTTL')
end
return 1
