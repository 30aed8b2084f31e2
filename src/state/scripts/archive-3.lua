--[[
  Moves the oldest page of a stream's timeline tail out of Redis: the page's entries are in the segment store
  already (one immutable JSON object, written before this call, as segments are before their append), so the
  tail drops them and the list of page refs gets a small reference to the object instead. Fenced like
  append-2.lua: only the current claim archives, and nothing once the stream ended. The entries must still head the tail (a retry, or a call
  that raced another, finds them gone and changes nothing). Refs whose page ended before the DVR window (the
  newest entry's program date-time less the window) are dropped and returned: the caller deletes their media.
  A reader's MULTI of the refs and the tail sees the timeline before or after, never half of it; the entries a
  reader sees do not change, so nothing is published.

  KEYS[1] meta hash
  KEYS[2] timeline list (the tail)
  KEYS[3] list of page refs, oldest first
  ARGV[1] epoch of the writer
  ARGV[2] claim id of the writer
  ARGV[3] entries in the page
  ARGV[4] sequence number of the page's first entry
  ARGV[5] claim id of the page's first entry
  ARGV[6] the page ref JSON ({"first","last","pdt","end","key"})
  ARGV[7] DVR window in ms

  Returns {"1" when the page was archived else "0", then the JSON of each ref dropped}.
  Errors: STALE_EPOCH <current epoch> (claim <current claim>).
]]
local refused = fenced(KEYS[1], ARGV[1], ARGV[2])
if refused then
  return refused
end
-- an ended stream's tail was sealed (broadcasts.ts) into pages of its own: a stalled owner that wakes after
-- the end must not trim what the recording lists
if redis.call('HGET', KEYS[1], 'state') == 'ended' then
  return {'0'}
end
local size = tonumber(ARGV[3])
local head = redis.call('LINDEX', KEYS[2], 0)
-- a page is taken only while the tail keeps at least as many entries after it
if not head or redis.call('LLEN', KEYS[2]) < 2 * size then
  return {'0'}
end
local first = cjson.decode(head)
if first.seq ~= tonumber(ARGV[4]) or first.claim ~= ARGV[5] then
  return {'0'}
end
redis.call('LTRIM', KEYS[2], size, -1)
redis.call('RPUSH', KEYS[3], ARGV[6])
local result = {'1'}
local cutoff = cjson.decode(redis.call('LINDEX', KEYS[2], -1)).pdt - tonumber(ARGV[7])
while true do
  local oldest = redis.call('LINDEX', KEYS[3], 0)
  if not oldest or cjson.decode(oldest)['end'] >= cutoff then
    break
  end
  table.insert(result, redis.call('LPOP', KEYS[3]))
end
return result
