--[[
  Appends one segment (all renditions at once, so renditions stay aligned) to a stream's timeline.
  Refused unless the writer holds the current epoch and writes the next sequence number.

  KEYS[1]      meta hash
  KEYS[2]      timeline list
  KEYS[3..2+n] segment keys of this sequence number, one per rendition, in ladder order
  KEYS[3+n..]  segment keys of the sequence number leaving the window (seq - window), if any
  ARGV[1] epoch of the writer
  ARGV[2] sequence number
  ARGV[3] program date-time, ms since the epoch
  ARGV[4] "1" when the writer starts a discontinuity (ffmpeg restarted)
  ARGV[5] playlist window, in segments
  ARGV[6] TTL in ms of a segment that left the window (its duration plus the playlist's, plus margin)
  ARGV[7] TTL in ms of every key of a live stream (so an abandoned stream's state ends by itself)
  ARGV[8] pub/sub channel
  ARGV[9] stream id
  ARGV[10] durations JSON, {"rendition": seconds}
  ARGV[11] n, the number of renditions
  ARGV[12..11+n] segment bytes, one per rendition, in ladder order

  Returns the entry JSON. Errors: STALE_EPOCH <current>, SEQ_MISMATCH <expected>.
]]
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then
  return redis.error_reply('STALE_EPOCH ' .. tostring(epoch))
end
local nextSeq = tonumber(redis.call('HGET', KEYS[1], 'nextSeq') or '0')
local seq = tonumber(ARGV[2])
if seq ~= nextSeq then
  return redis.error_reply('SEQ_MISMATCH ' .. nextSeq)
end
local n = tonumber(ARGV[11])
local disc = ARGV[4] == '1' or redis.call('HGET', KEYS[1], 'discNext') == '1'
local cc = tonumber(redis.call('HGET', KEYS[1], 'cc') or '0')
if disc then
  cc = cc + 1
end
for i = 1, n do
  redis.call('SET', KEYS[2 + i], ARGV[11 + i], 'PX', ARGV[7])
end
local entry = '{"seq":' .. seq .. ',"pdt":' .. ARGV[3] .. ',"disc":' .. (disc and 'true' or 'false') ..
  ',"cc":' .. cc .. ',"dur":' .. ARGV[10] .. '}'
redis.call('RPUSH', KEYS[2], entry)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
for i = 3 + n, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[6])
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'nextSeq', seq + 1, 'cc', cc, 'discNext', '0',
  'lastSegmentAt', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PUBLISH', ARGV[8], ARGV[9])
return entry
