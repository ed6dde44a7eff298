-- KEYS[1]: the lock; ARGV[1]: the holder's token.
-- Deletes the lock only while the token still holds it; returns 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
