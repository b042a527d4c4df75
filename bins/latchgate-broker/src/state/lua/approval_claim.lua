-- One-shot claim of an approval: exactly one caller ever gets 1.
-- KEYS[1] claim key
-- ARGV[1] claim time (unix ms), kept for operators reading Redis
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 1
end
return 0
