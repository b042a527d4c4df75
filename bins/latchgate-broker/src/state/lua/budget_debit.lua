-- Atomic all-or-nothing debit of a session budget.
-- KEYS[1] budget hash
-- ARGV[1] calls, ARGV[2] cost_cents
-- Returns {status, max_calls, max_cost, used_calls, used_cost} with status
-- 1 = debited (counters after), 0 = exhausted (counters unchanged),
-- -1 = no live budget. A malformed hash raises an error: the caller fails closed.
local b = redis.call('HMGET', KEYS[1], 'max_calls', 'max_cost', 'used_calls', 'used_cost')
if not b[1] then
  return {-1, 0, 0, 0, 0}
end
local max_calls, max_cost = tonumber(b[1]), tonumber(b[2])
local used_calls, used_cost = tonumber(b[3]), tonumber(b[4])
local calls, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
if not (max_calls and max_cost and used_calls and used_cost) then
  return redis.error_reply('malformed budget ' .. KEYS[1])
end
local function fits(limit, used, more)
  return limit < 0 or used + more <= limit
end
if not (fits(max_calls, used_calls, calls) and fits(max_cost, used_cost, cost)) then
  return {0, max_calls, max_cost, used_calls, used_cost}
end
used_calls = redis.call('HINCRBY', KEYS[1], 'used_calls', calls)
used_cost = redis.call('HINCRBY', KEYS[1], 'used_cost', cost)
return {1, max_calls, max_cost, used_calls, used_cost}
