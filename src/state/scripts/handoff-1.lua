--[[
  A draining owner announces it is handing the stream over: its lease is marked so that a publisher
  reconnecting to another node waits for the release (claim answers HANDOFF_PENDING) instead of being refused.

  KEYS[1] lease string
  ARGV[1] holder (nodeId/publishId/epoch)

  Returns 1 when marked, 0 when the lease is not the caller's.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. '#handoff', 'KEEPTTL')
  return 1
end
return 0
