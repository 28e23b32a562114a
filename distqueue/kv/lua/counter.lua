-- Add to or subtract from a counter, creating it when it is missing; a decrement stops at 0.
-- Safe to retry: the outcome is recorded under the request's id, and a call with an id seen
-- within the window returns that outcome and changes nothing.
--
-- KEYS[1]  the counter: a string of ASCII digits without leading zeros
-- KEYS[2]  the outcome of this request (the client's request id is part of the name; in the
--          counter's hash slot)
-- ARGV[1]  "incr" or "decr"
-- ARGV[2]  the amount, in ASCII digits, at most 2**63 - 1
-- ARGV[3]  the TTL in milliseconds of a counter created here; "0" for no expiry
-- ARGV[4]  milliseconds the outcome is kept for a retry of the same request
--
-- Returns the new value as a string (a Lua number would lose digits above 2**53), or the error
-- reply "NOTCOUNTER ..." when the key holds something other than a counter. An increment past
-- 2**63 - 1 fails with Redis's own overflow error and changes nothing. Errors are not
-- recorded: they changed nothing, so a retry meets the same state.
local key, outcome = KEYS[1], KEYS[2]
local op, amount, ttl, window = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local done = redis.call('GET', outcome)
if done then
  return done
end

local result
local current = redis.call('GET', key)
if not current then
  result = '0'
  if op == 'incr' then result = amount end
  if ttl ~= '0' then
    redis.call('SET', key, result, 'PX', ttl)
  else
    redis.call('SET', key, result)
  end
elseif not string.match(current, '^%d+$') then
  return redis.error_reply('NOTCOUNTER the value is not a counter')
elseif op == 'incr' then
  redis.call('INCRBY', key, amount)
  result = redis.call('GET', key)
elseif #current < #amount or (#current == #amount and current <= amount) then
  -- Digit strings without leading zeros compare by length, then lexically.
  redis.call('SET', key, '0', 'KEEPTTL')
  result = '0'
else
  redis.call('DECRBY', key, amount)
  result = redis.call('GET', key)
end
redis.call('SET', outcome, result, 'PX', window)
return result
