-- Cache closed bars per chunk, compare-and-set on the generation; KEYS/ARGV layout in chunk_cache.py.
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return 0 end
for i = 5, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
local limit = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[1]) > limit then
  local names = redis.call('HKEYS', KEYS[1])
  table.sort(names)
  for i = 1, #names - limit do
    redis.call('HDEL', KEYS[1], names[i]); redis.call('HDEL', KEYS[2], names[i])
  end
end
local ttl = tonumber(ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl)
redis.call('SADD', KEYS[4], ARGV[3]); redis.call('EXPIRE', KEYS[4], ttl)
return 1
