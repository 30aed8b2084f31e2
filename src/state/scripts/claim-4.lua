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
  ARGV[4] target duration in seconds, set on the broadcast's first claim and never changed after
  ARGV[5] pub/sub channel for timeline changes
  ARGV[6] stream id (the message published)
  ARGV[7] claim id (random, drawn by the claiming node)
  ARGV[8] "slate" when the caller claims to keep the slate of a stream that lost its input (its owner died
          or left it), else "publish" (or absent)
  ARGV[9] id of a node the caller knows is dead (its health check refused), or "": a lease that node holds is
          taken at once instead of waited out

  ARGV[10] the publisher's input role ("primary" or "backup", src/stream/standby.ts), recorded as the meta's `role`
  ARGV[11] a lease holder to preempt, or "": a hot standby taking over from an active input it saw stall
          (no append for standby.takeoverAfter) claims over that holder's lease, at a higher epoch, so the
          stalled owner's next write is fenced off; a lease held by anyone else is still refused

  Input loss (see slate-2.lua): a lease whose value ends in "#slate" is held by a node that only keeps the
  timeline going with slate segments; a publish claim takes it (a higher epoch fences the slate holder off
  at once); a slate claim does not. A slate claim is refused (NOT_LIVE) unless the stream has a timeline to
  continue (segments and a ladder) and has not ended; it leaves the stream in its reconnect window (the
  window's start kept) and holds the lease as "...#slate".

  A claim that starts a timeline (nothing appended yet) starts a broadcast: its id, the claim id, names the
  media of everything appended until the stream ends, in the segment store. So does a claim of a stream that
  ended: its timeline starts over (sequence 0, a new ladder, a new start time); the ended broadcast was sealed
  when it ended (its pages and manifest are in the store, its record in the broadcasts hash) and stays
  playable as VOD until its retention.

  Returns {epoch, nextSeq, targetDuration, ladder JSON or "", broadcast id, then where the timeline stands:
  endsAt (ms, where its last entry's media ends; 0 without one), lastSegmentAt (ms, when it was appended), and
  "1" when the stream had no input (it was in its reconnect window, or its lease was a slate's or a dead
  node's), so a returning publisher shows the slate until its own first segment, and "1" when the last entry
  is a slate segment}. endsAt is where a standby's media must continue the timeline: the end of the active
  input's media, unless the slate listed a segment after it.
  Errors: ALREADY_LIVE <holder>; HANDOFF_PENDING <holder> while a draining owner finishes its last segment;
  NOT_LIVE <state> for a slate claim of a stream with nothing to continue; CONFIG_CONFLICT <had> <asked> when
  the caller's target duration is not the one of the live timeline it would continue (a node on another
  hls.segmentDuration, a bad config in a rollout, would list segments its playlist's EXT-X-TARGETDURATION
  does not allow). Nothing is written then. A stream that ended starts over with the caller's.
]]
local slate = ARGV[8] == 'slate'
local dead = ARGV[9] or ''
local holder = redis.call('GET', KEYS[2])
local stalled = ARGV[11] or ''
local preempt = holder and ((not slate and string.sub(holder, -6) == '#slate') or
  (dead ~= '' and string.sub(holder, 1, #dead + 1) == dead .. '/') or
  (stalled ~= '' and (holder == stalled or holder == stalled .. '#handoff')))
if holder and not preempt then
  if string.sub(holder, -8) == '#handoff' then
    return redis.error_reply('HANDOFF_PENDING ' .. holder)
  end
  return redis.error_reply('ALREADY_LIVE ' .. holder)
end
local state = redis.call('HGET', KEYS[1], 'state')
local target = redis.call('HGET', KEYS[1], 'targetDuration')
if target and state ~= 'ended' and tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0') > 0 and tonumber(target) ~= tonumber(ARGV[4]) then
  return redis.error_reply('CONFIG_CONFLICT ' .. target .. ' ' .. ARGV[4])
end
local inputLost = (state == 'reconnecting' or preempt) and '1' or '0'
if slate and (state ~= 'live' and state ~= 'reconnecting' or tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0') == 0 or
    not redis.call('HGET', KEYS[1], 'ladder')) then
  return redis.error_reply('NOT_LIVE ' .. tostring(state))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local nextSeq = tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0')
if state == 'ended' then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HDEL', KEYS[1], 'ladder', 'discNext', 'endsAt', 'lastSegmentAt', 'slate', 'targetDuration')
  nextSeq = 0
  inputLost = '0'
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
local lease = ARGV[1] .. '/' .. ARGV[2] .. '/' .. epoch
if slate then
  -- the reconnect window goes on from where the input was lost
  local released = redis.call('HGET', KEYS[1], 'releasedAt')
  if state ~= 'reconnecting' or not released or released == '' then
    released = now
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claim', ARGV[7], 'state', 'reconnecting', 'claimedAt', now, 'releasedAt', released)
  lease = lease .. '#slate'
else
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claim', ARGV[7], 'state', 'live', 'claimedAt', now, 'releasedAt', '',
    'role', ARGV[10] or 'primary')
end
redis.call('HDEL', KEYS[1], 'endedAt', 'released')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
redis.call('SET', KEYS[2], lease, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {epoch, nextSeq, redis.call('HGET', KEYS[1], 'targetDuration'), redis.call('HGET', KEYS[1], 'ladder') or '',
  redis.call('HGET', KEYS[1], 'broadcast') or ARGV[7], redis.call('HGET', KEYS[1], 'endsAt') or '0',
  redis.call('HGET', KEYS[1], 'lastSegmentAt') or '0', inputLost, redis.call('HGET', KEYS[1], 'slate') or '0'}
