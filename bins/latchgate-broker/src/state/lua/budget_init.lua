-- Create a session budget unless a live one exists (a budget is never reset).
-- KEYS[1] budget hash
-- ARGV[1] max_calls (-1 = no limit), ARGV[2] max_cost_cents (-1 = no limit), ARGV[3] ttl in ms
-- Returns 1 when created, 0 when a live budget already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'max_calls', ARGV[1], 'max_cost', ARGV[2], 'used_calls', 0, 'used_cost', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
