--[[
  Extends a publish lease while its holder still receives the stream. A lease that merely expired (Redis
  was away longer than its TTL) is taken back when nobody else claimed the stream since: the epoch is still
  the caller's.

  KEYS[1] lease string
  KEYS[2] meta hash
  ARGV[1] holder (nodeId/publishId/epoch)
  ARGV[2] lease TTL in milliseconds
  ARGV[3] epoch of the holder

  Returns 1 when the caller holds the lease, 0 when the stream is no longer the caller's.
]]
local lease = redis.call('GET', KEYS[1])
if lease == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not lease and redis.call('HGET', KEYS[2], 'epoch') == ARGV[3] then
  local state = redis.call('HGET', KEYS[2], 'state')
  if state == 'live' or state == 'reconnecting' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('HSET', KEYS[2], 'state', 'live', 'releasedAt', '')
    return 1
  end
end
return 0
