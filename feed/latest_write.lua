-- KEYS and ARGV: see latest.py (latest_write_args), which encodes them.
local written = {}
for i, key in ipairs(KEYS) do
  local ts = ARGV[2 * i - 1]
  local current = redis.call('HGET', key, 'ts')
  if current and tonumber(current) > tonumber(ts) then
    written[i] = 0
  else
    redis.call('HSET', key, 'ts', ts, 'data', ARGV[2 * i])
    written[i] = 1
  end
end
return written
