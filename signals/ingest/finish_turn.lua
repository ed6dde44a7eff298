-- KEYS[1]: an underlying's done mark (keys.batch_done); ARGV: the finished ticket, the mark's ttl seconds.
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
if done < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return done
