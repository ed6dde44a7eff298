-- Hand an open bar computed from SQL to Redis; KEYS/ARGV layout in open_bar.py.
local function num(x) return tonumber(x) end
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function mx(a, b) if a == nil then return b end if b == nil then return a end if a > b then return a end return b end
local raw = redis.call('HGETALL', KEYS[1])
local st = {}
for k = 1, #raw, 2 do st[raw[k]] = raw[k + 1] end
local A = {b = num(ARGV[4]), d = ARGV[5], o = num(ARGV[6]), ot = num(ARGV[7]), h = num(ARGV[8]), l = num(ARGV[9]),
           c = num(ARGV[10]), ct = num(ARGV[11]), vm = num(ARGV[12]), vb = num(ARGV[13]), va = num(ARGV[14]),
           oi = num(ARGV[15]), oit = num(ARGV[16])}
local b = num(st.b)
if b ~= nil and b > A.b then return 0 end
if b ~= nil and b == A.b then
  if st.d ~= A.d then return 0 end
  if num(st.ot) < A.ot then A.o = num(st.o); A.ot = num(st.ot) end
  if num(st.ct) > A.ct then A.c = num(st.c); A.ct = num(st.ct) end
  A.h = mx(A.h, num(st.h)); A.l = -mx(-A.l, -num(st.l))
  A.vm = mx(A.vm, num(st.vm)); A.vb = mx(A.vb, num(st.vb))
  local soit = num(st.oit)
  if soit ~= nil and (A.oit == nil or soit > A.oit) then A.oi = num(st.oi); A.oit = soit end
end
redis.call('HSET', KEYS[1], 'b', fmt(A.b), 'd', A.d, 'o', fmt(A.o), 'ot', fmt(A.ot), 'h', fmt(A.h), 'l', fmt(A.l),
           'c', fmt(A.c), 'ct', fmt(A.ct), 'vm', fmt(A.vm), 'vb', fmt(A.vb), 'va', fmt(A.va), 'oi', fmt(A.oi),
           'oit', fmt(A.oit), 's', '1', 'os', '', 'cs', '', 'ois', '')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
