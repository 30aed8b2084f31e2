--[[
  Extends a publish lease while its holder still receives the stream.

  KEYS[1] lease string
  ARGV[1] holder (nodeId/publishId/epoch)
  ARGV[2] lease TTL in milliseconds

  Returns 1 when renewed, 0 when the lease is no longer the caller's.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
