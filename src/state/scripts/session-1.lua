--[[
  Applies one batched update to a viewer session. A session has no record until its first use (a position
  report, or a segment fetched): that first write creates it from its token's facts (stream, issue time). It
  never brings back a session that expired after use: it creates only for a token used within its start window
  and issued less than one TTL ago, and a record that expired was idle a whole TTL after it was issued. An
  inferred position (from the segments a player fetched) does not replace a position the player reported
  itself within the grace period.

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
  ARGV[13] stream id to create a missing session with, or "" to update only an existing one
  ARGV[14] when the session's token was issued, ms
  ARGV[15] when the session was first used (the write was made), ms
  ARGV[16] start window in ms: how far apart issue and first use may be
  ARGV[17] the writer's schema version (state/schema.ts): a created session carries it as `v`; a session of a
           newer schema is left as it is (this release does not know its layout)

  Returns 2 when it created the session, 1 when it updated it, 0 when the session does not exist, 3 when it
  left a session of a newer schema alone.
]]
local now = ARGV[2]
local result = 1
local v = redis.call('HGET', KEYS[1], 'v')
if v and (not string.match(v, '^[1-9]%d*$') or tonumber(v) > tonumber(ARGV[17])) then
  return 3
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[13] == '' then
    return 0
  end
  local issued = tonumber(ARGV[14])
  if math.abs(tonumber(ARGV[15]) - issued) > tonumber(ARGV[16]) or tonumber(now) - issued >= tonumber(ARGV[1]) then
    return 0
  end
  redis.call('HSET', KEYS[1], 'v', ARGV[17], 'streamId', ARGV[13], 'createdAt', ARGV[14], 'paused', '0')
  result = 2
end
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
return result
