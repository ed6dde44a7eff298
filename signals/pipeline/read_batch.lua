-- KEYS and ARGV: see batch_reads.py (read_batch_keys), which encodes them.
local n = #KEYS / 2
local held, timeframes = {}, {}
for i = 1, n do
  held[i] = redis.call('HGET', KEYS[i], 'data')
  timeframes[i] = redis.call('SMEMBERS', KEYS[n + i])
end
return {held, timeframes}
