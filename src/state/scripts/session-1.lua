--[[
  Applies one batched update to a viewer session, if the session still exists (an expired session is not
  brought back half-filled). An inferred position (from the segments a player fetched) does not replace a
  position the player reported itself within the grace period.

  KEYS[1] session hash
  ARGV[1]  TTL in ms, renewed by any activity
  ARGV[2]  now, ms
  ARGV[3]  rendition last requested, or ""
  ARGV[4]  node that served the viewer, or ""
  ARGV[5]  "1" when the player reported a position
  ARGV[6]  reported position, seconds on the stream's timeline
  ARGV[7]  reported program date-time, ms, or ""
  ARGV[8]  reported paused flag, "1" or "0"
  ARGV[9]  "1" when a position was inferred from a segment request
  ARGV[10] inferred position, seconds
  ARGV[11] inferred program date-time, ms
  ARGV[12] grace in ms during which a reported position wins over an inferred one

  Returns 1 when applied, 0 when the session does not exist.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local now = ARGV[2]
redis.call('HSET', KEYS[1], 'lastSeen', now)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'rendition', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'node', ARGV[4])
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'position', ARGV[6], 'pdt', ARGV[7], 'paused', ARGV[8], 'source', 'reported',
    'reportedAt', now, 'updatedAt', now)
elseif ARGV[9] == '1' then
  local reported = tonumber(redis.call('HGET', KEYS[1], 'reportedAt') or '0')
  if tonumber(now) - reported > tonumber(ARGV[12]) then
    redis.call('HSET', KEYS[1], 'position', ARGV[10], 'pdt', ARGV[11], 'source', 'inferred', 'updatedAt', now)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
