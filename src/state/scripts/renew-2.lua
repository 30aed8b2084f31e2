--[[
  Extends a publish lease while its holder still receives the stream, or while it flushes its last segments
  after a handoff mark (handoff-1): that lease must outlive the flush, or another node's claim would fence
  the last segments off. A lease that merely expired (Redis was away longer than its TTL) is taken back when
  nobody else claimed the stream since: the epoch and the claim id are still the caller's.

  KEYS[1] lease string
  KEYS[2] meta hash
  ARGV[1] holder (nodeId/publishId/epoch)
  ARGV[2] lease TTL in milliseconds
  ARGV[3] epoch of the holder
  ARGV[4] claim id of the holder
  ARGV[5] "1" while the holder hands the stream over (a lease taken back keeps the handoff mark); "slate" while
          it keeps the slate (slate-2.lua, claim-4.lua: a lease taken back keeps that mark and the stream stays
          in its reconnect window)

  Returns 1 when the caller holds the lease, 0 when the stream is no longer the caller's.
]]
local lease = redis.call('GET', KEYS[1])
if lease == ARGV[1] or lease == ARGV[1] .. '#handoff' or lease == ARGV[1] .. '#slate' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
-- never a stream its owner released (release-2 marks it): a late renewal (one relayed by another node for an
-- owner that let go meanwhile) must not bring it back to life
if not lease and redis.call('HGET', KEYS[2], 'epoch') == ARGV[3] and redis.call('HGET', KEYS[2], 'claim') == ARGV[4] and
    redis.call('HGET', KEYS[2], 'released') ~= '1' then
  local state = redis.call('HGET', KEYS[2], 'state')
  if ARGV[5] == 'slate' and (state == 'live' or state == 'reconnecting') then
    redis.call('SET', KEYS[1], ARGV[1] .. '#slate', 'PX', ARGV[2])
    return 1
  end
  if state == 'live' or state == 'reconnecting' then
    redis.call('SET', KEYS[1], ARGV[5] == '1' and ARGV[1] .. '#handoff' or ARGV[1], 'PX', ARGV[2])
    redis.call('HSET', KEYS[2], 'state', 'live', 'releasedAt', '')
    return 1
  end
end
return 0
