--[[
  Appends one segment (all renditions at once, so renditions stay aligned) to a stream's timeline.
  Refused unless the writer holds the current claim (epoch and claim id) and writes the next sequence number,
  and refused once the stream ended: a partitioned owner that comes back after EXT-X-ENDLIST was served must
  not add segments behind it. A stream in its reconnect window (`reconnecting`) still takes the current
  claim's appends: nobody else owns it and no ENDLIST was served, and that is how an owner whose lease lapsed
  while Redis was away (restart, freeze) publishes what it queued meanwhile; its next renewal makes it live.

  A write whose reply was lost (the caller's command timed out, yet Redis ran it) is answered again when
  retried: the same claim's same sequence number as the last entry returns that entry, unchanged.

  The segments' bytes are in the segment store already (written before this append, so anything listed is
  readable from every node); Redis keeps the entry only.

  KEYS[1]      meta hash
  KEYS[2]      timeline list
  ARGV[1] epoch of the writer
  ARGV[2] claim id of the writer
  ARGV[3] sequence number
  ARGV[4] program date-time, ms since the epoch
  ARGV[5] "1" when the writer starts a discontinuity (ffmpeg restarted)
  ARGV[6] playlist window, in segments; 0: no trim (the DVR window: pages take old entries, see archive-3.lua)
  ARGV[7] "1" when the segment is a slate segment (input loss): its entry says `"slate":true`, and the first
          slate segment after media, and the first media segment after slate, start a discontinuity
  ARGV[8] pub/sub channel
  ARGV[9] stream id
  ARGV[10] durations JSON, {"rendition": seconds}
  ARGV[11] the writer's schema version (state/schema.ts): the entry carries it as `v`

  Returns {entry JSON, the list's length after it, then the JSON of each entry that left the window}: the caller deletes the media those
  name from the segment store once no player can still want them (their keys carry their own claim id, which
  only the entries know).
  Errors: STALE_EPOCH <current epoch> (claim <current claim>), STREAM_ENDED at <ms>, SEQ_MISMATCH <expected>.
]]
local refused = fenced(KEYS[1], ARGV[1], ARGV[2])
if refused then
  return refused
end
if redis.call('HGET', KEYS[1], 'state') == 'ended' then
  return redis.error_reply('STREAM_ENDED at ' .. tostring(redis.call('HGET', KEYS[1], 'endedAt')))
end
local nextSeq = tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0')
local seq = tonumber(ARGV[3])
if seq ~= nextSeq then
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last and seq == nextSeq - 1 then
    local entry = cjson.decode(last)
    if entry.seq == seq and entry.claim == ARGV[2] then
      return {last, redis.call('LLEN', KEYS[2])}
    end
  end
  return redis.error_reply('SEQ_MISMATCH ' .. nextSeq)
end
local slate = ARGV[7] == '1'
local wasSlate = redis.call('HGET', KEYS[1], 'slate') == '1'
local disc = ARGV[5] == '1' or redis.call('HGET', KEYS[1], 'discNext') == '1' or slate ~= wasSlate
local cc = tonumber(redis.call('HGET', KEYS[1], 'cc') or '0')
if disc then
  cc = cc + 1
end
local entry = '{"v":' .. tonumber(ARGV[11]) .. ',"seq":' .. seq .. ',"claim":"' .. ARGV[2] .. '","pdt":' .. ARGV[4] .. ',"disc":' ..
  (disc and 'true' or 'false') .. ',"cc":' .. cc .. ',"dur":' .. ARGV[10] .. (slate and ',"slate":true' or '') .. '}'
redis.call('RPUSH', KEYS[2], entry)
local length = redis.call('LLEN', KEYS[2])
local excess = length - tonumber(ARGV[6])
local result = {entry, tonumber(ARGV[6]) > 0 and math.min(length, tonumber(ARGV[6])) or length}
if tonumber(ARGV[6]) > 0 and excess > 0 then
  for _, left in ipairs(redis.call('LRANGE', KEYS[2], 0, excess - 1)) do
    table.insert(result, left)
  end
  redis.call('LTRIM', KEYS[2], excess, -1)
end
local t = redis.call('TIME')
-- where the timeline's media ends (its last entry's date-time plus its longest duration): the next owner's or
-- slate's date-times go on from there (claim-4 and slate-2 return it)
local longest = 0
for _, d in pairs(cjson.decode(ARGV[10])) do
  longest = math.max(longest, tonumber(d))
end
redis.call('HSET', KEYS[1], 'nextSeq', seq + 1, 'cc', cc, 'discNext', '0', 'slate', slate and '1' or '0',
  'endsAt', tonumber(ARGV[4]) + math.floor(longest * 1000 + 0.5),
  'lastSegmentAt', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PUBLISH', ARGV[8], ARGV[9])
return result
