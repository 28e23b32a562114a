#!lua flags=allow-oom
-- Wake one blocked consumer, so that it looks at the queue again (see protocol.py: a consumer
-- that leaves knowing when something will change passes that on).
--
-- KEYS[1] avail  list  token: "there may be an item", for blocked consumers
--
-- Returns 1.
token(KEYS[1])
return 1
