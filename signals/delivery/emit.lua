-- KEYS and ARGV: see emit_script.py, which encodes them.
local c = cmsgpack.unpack(ARGV[1])
local once = c[3]
if once > 0 and not redis.call('SET', KEYS[once], '1', 'NX', 'EX', c[4]) then
  return 0
end
local function payload(j) return ARGV[1 + j] end
-- Entries: a record is written only for a tick entry whose outputs no earlier delivery wrote. An entry is done
-- when the consumer group no longer holds it as pending (its batch finished and acknowledged it), and claimed by
-- the first delivery to set its field in the stream's marker hash (the ack step deletes the field). The caller
-- checks pending itself (stream key 0) where the stream lies on another slot, and sends marker 0 for a done entry.
local group = c[5]
local fresh = {}
local i = 7
for e = 1, c[6] do
  local stream, id, marker = c[i], c[i + 1], c[i + 2]
  i = i + 3
  local pending = marker > 0
  if pending and group ~= '' and stream > 0 then
    local found = redis.pcall('XPENDING', KEYS[stream], group, id, id, 1)
    if type(found) == 'table' and found.err == nil then pending = #found > 0 end
  end
  fresh[e] = pending and redis.call('HSETNX', KEYS[marker], id, '1') == 1
  if fresh[e] then redis.call('EXPIRE', KEYS[marker], c[4]) end
end
local function wanted(e) return e == 0 or fresh[e] end
local n = c[i]; i = i + 1
for _ = 1, n do
  if wanted(c[i + 3]) then
    redis.call('XADD', KEYS[c[i]], 'MAXLEN', '~', c[1], '*', 'data', payload(c[i + 1]), 'instrument_key', c[i + 2])
  end
  i = i + 4
end
n = c[i]; i = i + 1
for _ = 1, n do
  local key, left = KEYS[c[i]], c[i + 1]
  i = i + 2
  local items = {}
  for _ = 1, left do
    if wanted(c[i + 1]) then items[#items + 1] = payload(c[i]) end
    i = i + 2
    if #items == 500 then  -- LPUSH in slices: a call's arguments live on the bounded Lua stack
      redis.call('LPUSH', key, unpack(items))
      items = {}
    end
  end
  if #items > 0 then redis.call('LPUSH', key, unpack(items)) end
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
  if wanted(c[i + 2]) then redis.call('PUBLISH', c[i], payload(c[i + 1])) end
  i = i + 3
end
return 1
