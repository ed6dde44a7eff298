-- KEYS[1]: a tick stream; ARGV[1]: the consumer group, ARGV[2...]: entry ids. Returns 0 per id the group no longer
-- holds as pending (acknowledged: done), else 1; a missing stream or group leaves every entry to the markers, as the
-- emit script's own check does.
local pending = {}
for i = 2, #ARGV do
  local found = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  pending[i - 1] = (type(found) == 'table' and found.err == nil and #found == 0) and 0 or 1
end
return pending
