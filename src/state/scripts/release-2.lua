--[[
  The publisher left: drops the caller's lease and starts the reconnect window. The playlist stays live
  (no EXT-X-ENDLIST) until the window passes without a new claim.

  KEYS[1] meta hash
  KEYS[2] lease string
  ARGV[1] holder (nodeId/publishId/epoch)
  ARGV[2] epoch
  ARGV[3] pub/sub channel
  ARGV[4] stream id
  ARGV[5] claim id

  Returns 1 when the stream entered its reconnect window, 0 when another owner already holds it. The meta hash
  says `released` (1) until the next claim: the stream was let go, not lost with a lease that lapsed while its
  owner lives (Redis away), so any node may keep its slate (slate-keepers.ts).
]]
local lease = redis.call('GET', KEYS[2])
if lease == ARGV[1] or lease == ARGV[1] .. '#handoff' or lease == ARGV[1] .. '#slate' then
  redis.call('DEL', KEYS[2])
end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'claim') ~= ARGV[5] or
    redis.call('HGET', KEYS[1], 'state') ~= 'live' then
  return 0
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'state', 'reconnecting', 'released', '1', 'releasedAt',
  tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
