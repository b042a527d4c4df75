-- The revocation epoch, never below the broker's durable floor.
-- KEYS[1] epoch key
-- ARGV[1] floor: the highest epoch the broker has seen (mirrored on its own disk)
-- Returns {epoch, restored}. restored = 1 when Redis had no epoch or an older
-- one: it lost its data (restart without persistence) and the floor is written
-- back, so revoked leases stay revoked.
local floor = tonumber(ARGV[1])
local stored = redis.call('GET', KEYS[1])
local current = nil
if stored then
  current = tonumber(stored)
end
if current ~= nil and current >= floor then
  return {current, 0}
end
redis.call('SET', KEYS[1], string.format('%d', floor))
return {floor, 1}
