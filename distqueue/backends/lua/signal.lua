#!lua flags=allow-oom
-- After a blocked client took the shutdown token: hand it on to the next blocked client.
--
-- KEYS[1] meta      hash  field "shutdown" is set once the queue is shut down
-- KEYS[2] shutdown  list  the shutdown token every blocked client waits on
--
-- Returns 1 if the queue is shut down, else 0 (it was deleted and made anew meanwhile).
if redis.call('HEXISTS', KEYS[1], 'shutdown') == 1 then
    token(KEYS[2])
    return 1
end
return 0
