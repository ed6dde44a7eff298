-- KEYS[1]: the user's rate window counter of the request's kind; KEYS[2]: the user's usage hash of the exchange
-- date (both carry the user's hash tag, so one slot).
-- ARGV[1]: the kind's limit per window; ARGV[2]: the window counter's TTL (s); ARGV[3]: the kind;
-- ARGV[4]: the tier's requests per date (0: unlimited; -1: the date's quota and usage are not counted);
-- ARGV[5]: the usage hash's TTL (s).
-- Returns 0 (counted), 1 (refused by the rate) or 2 (refused by the quota).
-- A refused request is counted as throttled only, so the usage's total stays what was served.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
local quota = tonumber(ARGV[4])
if count > tonumber(ARGV[1]) then
  if quota >= 0 then
    redis.call('HINCRBY', KEYS[2], 'throttled', 1)
    redis.call('EXPIRE', KEYS[2], ARGV[5])
  end
  return 1
end
if quota < 0 then
  return 0
end
local total = redis.call('HINCRBY', KEYS[2], 'total', 1)
if quota > 0 and total > quota then
  redis.call('HINCRBY', KEYS[2], 'total', -1)
  redis.call('HINCRBY', KEYS[2], 'throttled', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return 2
end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 0
