-- Increment the revocation epoch; the result is above both Redis's value and
-- the broker's durable floor.
-- KEYS[1] epoch key
-- ARGV[1] floor
-- Returns the new epoch.
local floor = tonumber(ARGV[1])
local stored = redis.call('GET', KEYS[1])
local current = 0
if stored then
  current = tonumber(stored) or 0
end
if current < floor then
  current = floor
end
local bumped = current + 1
redis.call('SET', KEYS[1], string.format('%d', bumped))
return bumped
