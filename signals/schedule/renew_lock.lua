-- KEYS[1]: the lock; ARGV[1]: the holder's token, ARGV[2]: the new TTL in milliseconds.
-- Extends the TTL only while the token still holds the lock; returns 1 if extended, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
