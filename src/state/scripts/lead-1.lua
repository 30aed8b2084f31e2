--[[
  One node at a time does the cluster's housekeeping (the sweep): it holds a short lease and renews it on each
  round; when it stops (crash, drain, exit) the lease runs out and another node takes it.

  KEYS[1] the lease string
  ARGV[1] node id
  ARGV[2] lease TTL in milliseconds

  Returns 1 when the caller holds the lease (taken or renewed), 0 when another node does.
]]
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
