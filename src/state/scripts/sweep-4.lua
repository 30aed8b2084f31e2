--[[
  Moves a stream along its life when nobody else will: a live stream whose lease expired (its node died or
  was frozen) enters the reconnect window; a stream whose window passed ends (EXT-X-ENDLIST) and its state
  expires after the retention. Any node may run it at any time.

  KEYS[1] meta hash
  KEYS[2] lease string
  KEYS[3] timeline list (the tail of the timeline)
  KEYS[4] list of timeline page refs
  ARGV[1] reconnect window in ms
  ARGV[2] retention in seconds
  ARGV[3] pub/sub channel
  ARGV[4] stream id

  Returns {state after the sweep, "1" when this call changed it}; the state is "gone" when none is left. Only
  the call that changed the state says so, so the change is logged once in the cluster, and the broadcast that
  ended is sealed and scheduled for deletion once: for it the reply goes on with {broadcast id, createdAt,
  endedAt, targetDuration, ladder JSON, the page refs, the tail}, the timeline as it ended, read in the same
  step (a claim that starts a new broadcast right after cannot take it away first).
]]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'gone', '0'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if state == 'live' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'reconnecting', 'releasedAt', now)
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return {'reconnecting', '1'}
end
if state == 'reconnecting' and now - tonumber(redis.call('HGET', KEYS[1], 'releasedAt')) >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'ended', 'endedAt', now)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return {'ended', '1', redis.call('HGET', KEYS[1], 'broadcast') or redis.call('HGET', KEYS[1], 'claim') or '',
    redis.call('HGET', KEYS[1], 'createdAt') or '0', now, redis.call('HGET', KEYS[1], 'targetDuration') or '0',
    redis.call('HGET', KEYS[1], 'ladder') or '', redis.call('LRANGE', KEYS[4], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1)}
end
return {state, '0'}
