-- The notes of stored ticks for many instruments in one call; KEYS/ARGV layout in tick_record.py.
local function record(KEYS, ARGV)
local track_ttl, open_ttl, cache_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n, m = tonumber(ARGV[4]), tonumber(ARGV[5])
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function mx(a, b) if a == nil then return b end if b == nil then return a end if a > b then return a end return b end
-- source ids in byte order (PostgreSQL's COLLATE "C", Python's str order): Lua's own < follows the locale
local function before(a, b)
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- (t, s) comes after (bt, bs) in (time, source id) order; nil on a tie with an unknown id (a seeded bar's)
local function after(t, s, bt, bs)
  if t ~= bt then return t > bt end
  if s == '' or bs == '' then return nil end
  return before(bs, s)
end
local ts, px, vol, oi, day, sid = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local o = 5 + (i - 1) * 6
  ts[i] = tonumber(ARGV[o + 1]); px[i] = tonumber(ARGV[o + 2]); vol[i] = tonumber(ARGV[o + 3])
  oi[i] = tonumber(ARGV[o + 4]); day[i] = ARGV[o + 5]; sid[i] = ARGV[o + 6]
end
local old = tonumber(redis.call('GET', KEYS[1]))
local hwm = old
for i = 1, n do hwm = mx(hwm, ts[i]) end
redis.call('SET', KEYS[1], fmt(hwm), 'EX', track_ttl)
local late = false
if old ~= nil then
  for i = 1, n do if ts[i] < old then late = true end end
end
if late then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], cache_ttl)
end
local tb = 5 + n * 6
local dropped = 0
for j = 1, m do
  local okey, ukey, ckey = KEYS[2 + 3 * j - 2], KEYS[2 + 3 * j - 1], KEYS[2 + 3 * j]
  local bk, ch = {}, {}
  for i = 1, n do
    local o = tb + ((j - 1) * n + (i - 1)) * 2
    bk[i] = tonumber(ARGV[o + 1]); ch[i] = ARGV[o + 2]
  end
  if late then
    for i = 1, n do
      if ts[i] < old then
        local u = tonumber(redis.call('HGET', ukey, ch[i]))
        if u ~= nil and ts[i] < u then
          redis.call('HDEL', ukey, ch[i]); redis.call('HDEL', ckey, ch[i]); dropped = dropped + 1
        end
      end
    end
  end
  local raw = redis.call('HGETALL', okey)
  local st = {}
  for k = 1, #raw, 2 do st[raw[k]] = raw[k + 1] end
  local b = tonumber(st.b)
  local S = {b = b, d = st.d, o = tonumber(st.o), ot = tonumber(st.ot), h = tonumber(st.h), l = tonumber(st.l),
             c = tonumber(st.c), ct = tonumber(st.ct), vm = tonumber(st.vm), vb = tonumber(st.vb),
             va = tonumber(st.va), oi = tonumber(st.oi), oit = tonumber(st.oit), s = st.s or '0',
             os = st.os or '', cs = st.cs or '', ois = st.ois or ''}
  for i = 1, n do
    if S.b == nil or bk[i] > S.b then
      local vb = nil
      local s = '0'
      if S.b ~= nil then
        if day[i] == S.d then vb = mx(S.vb, S.vm) end
        if old ~= nil and S.s == '1' then s = '1' end
      end
      S = {b = bk[i], d = day[i], o = px[i], ot = ts[i], h = px[i], l = px[i], c = px[i], ct = ts[i],
           vm = vol[i], vb = vb, va = nil, oi = oi[i], oit = nil, s = s, os = sid[i], cs = sid[i], ois = ''}
      if oi[i] ~= nil then S.oit = ts[i]; S.ois = sid[i] end
    elseif bk[i] == S.b then
      -- ties in time go by source id; against a seeded tick whose id is unknown the bar is left to SQL (s = 0)
      local first = after(S.ot, S.os, ts[i], sid[i])
      if first == nil then S.s = '0' end
      if first ~= false then S.o = px[i]; S.ot = ts[i]; S.os = sid[i] end
      local last = after(ts[i], sid[i], S.ct, S.cs)
      if last == nil then S.s = '0' end
      if last ~= false then S.c = px[i]; S.ct = ts[i]; S.cs = sid[i] end
      if px[i] > S.h then S.h = px[i] end
      if px[i] < S.l then S.l = px[i] end
      if oi[i] ~= nil then
        local newer = S.oit == nil or after(ts[i], sid[i], S.oit, S.ois)
        if newer == nil then S.s = '0' end
        if newer ~= false then S.oi = oi[i]; S.oit = ts[i]; S.ois = sid[i] end
      end
      if day[i] == S.d then
        S.vm = mx(S.vm, vol[i])
      elseif day[i] > S.d then
        local run = mx(S.vb, S.vm)
        if run ~= nil then S.va = (S.va or 0) + run - (S.vb or 0) end
        S.d = day[i]; S.vb = nil; S.vm = vol[i]
      else
        S.s = '0'
      end
    else
      if day[i] == S.d and vol[i] ~= nil then S.vb = mx(S.vb, vol[i]) end
    end
  end
  redis.call('HSET', okey, 'b', fmt(S.b), 'd', S.d, 'o', fmt(S.o), 'ot', fmt(S.ot), 'h', fmt(S.h), 'l', fmt(S.l),
             'c', fmt(S.c), 'ct', fmt(S.ct), 'vm', fmt(S.vm), 'vb', fmt(S.vb), 'va', fmt(S.va), 'oi', fmt(S.oi),
             'oit', fmt(S.oit), 's', S.s, 'os', S.os, 'cs', S.cs, 'ois', S.ois)
  redis.call('EXPIRE', okey, open_ttl)
end
return dropped
end
local c = cmsgpack.unpack(ARGV[1])
local dropped, ki, ai = 0, 0, 2
for _ = 1, tonumber(c[1]) do
  local nk, na = tonumber(c[ai]), tonumber(c[ai + 1])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ki + j] end
  for j = 1, na do a[j] = c[ai + 1 + j] end
  ki = ki + nk
  ai = ai + 2 + na
  dropped = dropped + record(k, a)
end
return dropped
