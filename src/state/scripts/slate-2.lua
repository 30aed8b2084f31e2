--[[
  The owner's publisher left (input loss) and the stream shows the slate: the owner keeps its claim (same
  epoch and claim id, so its slate segments continue the timeline with no new claim) and its lease, now marked
  "#slate", which a publish claim on any node takes over at once (claim-4.lua). The reconnect window starts:
  the stream ends when it passes without a publisher (sweep-4.lua), as it would after a release.

  KEYS[1] meta hash
  KEYS[2] lease string
  ARGV[1] holder (nodeId/publishId/epoch)
  ARGV[2] epoch
  ARGV[3] claim id
  ARGV[4] lease TTL in milliseconds
  ARGV[5] pub/sub channel
  ARGV[6] stream id

  Returns {nextSeq, endsAt, lastSegmentAt} (where the timeline stands: see claim-4.lua) when the caller keeps
  the slate, 0 when the stream is no longer the caller's (another claim, or it ended).
]]
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] and lease ~= ARGV[1] .. '#handoff' and lease ~= ARGV[1] .. '#slate' then
  return 0
end
if fenced(KEYS[1], ARGV[2], ARGV[3]) then
  return 0
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'live' and state ~= 'reconnecting' then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1] .. '#slate', 'PX', ARGV[4])
if state == 'live' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'state', 'reconnecting', 'releasedAt', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {redis.call('HGET', KEYS[1], 'nextSeq') or '0', redis.call('HGET', KEYS[1], 'endsAt') or '0',
  redis.call('HGET', KEYS[1], 'lastSegmentAt') or '0'}
