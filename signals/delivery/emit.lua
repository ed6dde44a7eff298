-- KEYS and ARGV: see emit_script.py, which encodes them.
local c = cmsgpack.unpack(ARGV[1])
local once = c[3]
if once > 0 and not redis.call('SET', KEYS[once], '1', 'NX', 'EX', c[4]) then
  return 0
end
local function payload(j) return ARGV[1 + j] end
local i = 5
local n = c[i]; i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[c[i]], 'MAXLEN', '~', c[1], '*', 'data', payload(c[i + 1]), 'instrument_key', c[i + 2])
  i = i + 3
end
n = c[i]; i = i + 1
for _ = 1, n do
  local key, left = KEYS[c[i]], c[i + 1]
  i = i + 2
  while left > 0 do  -- LPUSH in slices: a call's arguments live on the bounded Lua stack
    local take = math.min(left, 500)
    local items = {}
    for j = 1, take do items[j] = payload(c[i + j - 1]) end
    redis.call('LPUSH', key, unpack(items))
    i = i + take
    left = left - take
  end
  redis.call('LTRIM', key, 0, c[2])
end
n = c[i]; i = i + 1
local guards = {}  -- guard key index -> its tick time (false: none); several writes share one instrument's guard
for _ = 1, n do
  local guard = c[i + 3]
  local held = false
  if guard > 0 then
    held = guards[guard]
    if held == nil then
      held = redis.call('HGET', KEYS[guard], 'ts')
      guards[guard] = held
    end
  end
  if not held or tonumber(held) <= c[i + 4] then
    redis.call('SET', KEYS[c[i]], payload(c[i + 1]), 'EX', c[i + 2])
  end
  i = i + 5
end
n = c[i]; i = i + 1
for _ = 1, n do
  redis.call('PUBLISH', c[i], payload(c[i + 1]))
  i = i + 2
end
return 1
