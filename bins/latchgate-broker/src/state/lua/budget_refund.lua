-- Give back a debit whose dispatch never happened; counters never go below zero.
-- KEYS[1] budget hash
-- ARGV[1] calls, ARGV[2] cost_cents
-- Returns 1 when refunded, 0 when the budget no longer exists.
local b = redis.call('HMGET', KEYS[1], 'used_calls', 'used_cost')
if not b[1] then
  return 0
end
local calls = math.max(tonumber(b[1]) - tonumber(ARGV[1]), 0)
local cost = math.max(tonumber(b[2]) - tonumber(ARGV[2]), 0)
redis.call('HSET', KEYS[1], 'used_calls', string.format('%d', calls), 'used_cost', string.format('%d', cost))
return 1
