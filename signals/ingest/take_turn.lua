-- KEYS[1]: an underlying's done mark (keys.batch_done), KEYS[2]: its turn holder (keys.batch_holder);
-- ARGV: the waiting ticket, the holder key's ttl in ms (0: only look).
-- Returns {done, holder}; when every earlier ticket is done, the ticket holds the turn from here on.
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
local holder = tonumber(redis.call('GET', KEYS[2]) or '0')
local ticket = tonumber(ARGV[1])
if done >= ticket - 1 and tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], ticket, 'PX', ARGV[2])
  holder = ticket
end
return {done, holder}
