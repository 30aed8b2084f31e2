--[[
  Makes the caller the owner of a stream at a new, higher epoch, unless a live publisher holds its lease.
  The claim gets an id drawn by the caller (never by Redis): every entry it appends records it, and the
  segments' URIs and keys name it, so a timeline that lost its history never reuses a URI.

  KEYS[1] meta hash
  KEYS[2] lease string
  KEYS[3] timeline list (the tail of the timeline)
  KEYS[4] list of timeline page refs (older entries, archived in the segment store)
  ARGV[1] node id
  ARGV[2] publish id (unique per publish connection)
  ARGV[3] lease TTL in milliseconds
  ARGV[4] target duration in seconds, set on the stream's first claim and never changed after
  ARGV[5] pub/sub channel for timeline changes
  ARGV[6] stream id (the message published)
  ARGV[7] claim id (random, drawn by the claiming node)
  ARGV[8] the publisher's input role ("primary" or "backup", src/stream/standby.ts), recorded as the meta's `role`
  ARGV[9] a lease holder to preempt, or "": a hot standby taking over from an active input it saw stall
          (no append for standby.takeoverAfter) claims over that holder's lease, at a higher epoch, so the
          stalled owner's next write is fenced off; a lease held by anyone else is still refused

  A claim that starts a timeline (nothing appended yet) starts a broadcast: its id, the claim id, names the
  media of everything appended until the stream ends, in the segment store. So does a claim of a stream that
  ended: its timeline starts over (sequence 0, a new ladder, a new start time); the ended broadcast was sealed
  when it ended (its pages and manifest are in the store, its record in the broadcasts hash) and stays
  playable as VOD until its retention.

  Returns {epoch, nextSeq, targetDuration, ladder JSON or "", broadcast id, end of the last listed segment
  (ms since the epoch, 0 when none)}: where a standby's media must continue the timeline.
  Errors: ALREADY_LIVE <holder>; HANDOFF_PENDING <holder> while a draining owner finishes its last segment.
]]
local holder = redis.call('GET', KEYS[2])
if holder and ARGV[9] ~= '' and (holder == ARGV[9] or holder == ARGV[9] .. '#handoff') then
  holder = false
end
if holder then
  if string.sub(holder, -8) == '#handoff' then
    return redis.error_reply('HANDOFF_PENDING ' .. holder)
  end
  return redis.error_reply('ALREADY_LIVE ' .. holder)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local nextSeq = tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0')
if redis.call('HGET', KEYS[1], 'state') == 'ended' then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HDEL', KEYS[1], 'ladder', 'discNext')
  nextSeq = 0
end
if nextSeq > 0 then
  -- a new owner or a returning publisher: the first new segment starts a discontinuity
  redis.call('HSET', KEYS[1], 'discNext', '1')
else
  redis.call('HSET', KEYS[1], 'nextSeq', '0', 'cc', '0', 'createdAt', now, 'broadcast', ARGV[7])
end
if not redis.call('HGET', KEYS[1], 'targetDuration') then
  redis.call('HSET', KEYS[1], 'targetDuration', ARGV[4])
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claim', ARGV[7], 'state', 'live', 'claimedAt', now, 'releasedAt', '',
  'role', ARGV[8])
redis.call('HDEL', KEYS[1], 'endedAt')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
redis.call('SET', KEYS[2], ARGV[1] .. '/' .. ARGV[2] .. '/' .. epoch, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6])
-- the end of the last listed segment: the tail's last entry, or (a tail just archived) the last page's end
local lastEnd = 0
local last = redis.call('LINDEX', KEYS[3], -1)
if last then
  local entry = cjson.decode(last)
  local longest = 0
  for _, d in pairs(entry.dur) do
    longest = math.max(longest, tonumber(d))
  end
  lastEnd = math.floor(tonumber(entry.pdt) + longest * 1000)
else
  local ref = redis.call('LINDEX', KEYS[4], -1)
  if ref then
    lastEnd = tonumber(cjson.decode(ref)['end'])
  end
end
return {epoch, nextSeq, redis.call('HGET', KEYS[1], 'targetDuration'), redis.call('HGET', KEYS[1], 'ladder') or '',
  redis.call('HGET', KEYS[1], 'broadcast') or ARGV[7], lastEnd}
