#!lua
-- Cache counters: add to or subtract from a counter, creating it when it is missing; a
-- decrement stops at 0. Run wrapped (scripts.py), so a retry under the same request id returns
-- the first outcome and changes nothing.
--
-- KEYS[1]  the counter: a string of ASCII digits without leading zeros
-- KEYS[2]  the request's remembered reply (added by the wrapper; in the counter's hash slot)
-- ARGV[1]  "incr" or "decr"
-- ARGV[2]  the amount, in ASCII digits, at most 2**63 - 1
-- ARGV[3]  the TTL in milliseconds of a counter created here; "0" for no expiry
--
-- Returns the new value as a string (a Lua number would lose digits above 2**53), or the error
-- reply "NOTCOUNTER ..." when the key holds something other than a counter. An increment past
-- 2**63 - 1 fails with Redis's own overflow error and changes nothing. Errors are not
-- remembered: they changed nothing, so a retry meets the same state.
local key = KEYS[1]
local op, amount, ttl = ARGV[1], ARGV[2], ARGV[3]

local current = redis.call('GET', key)
if not current then
  local result = '0'
  if op == 'incr' then result = amount end
  if ttl ~= '0' then
    redis.call('SET', key, result, 'PX', ttl)
  else
    redis.call('SET', key, result)
  end
  return result
end
if not string.match(current, '^%d+$') then
  return redis.error_reply('NOTCOUNTER the value is not a counter')
end
if op == 'incr' then
  redis.call('INCRBY', key, amount)
elseif #current < #amount or (#current == #amount and current <= amount) then
  -- Digit strings without leading zeros compare by length, then lexically.
  redis.call('SET', key, '0', 'KEEPTTL')
  return '0'
else
  redis.call('DECRBY', key, amount)
end
return redis.call('GET', key)
