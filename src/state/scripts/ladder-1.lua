--[[
  Records the stream's rendition ladder (what the master playlist lists) once; later owners keep it so a
  player's master playlist stays valid across a move.

  KEYS[1] meta hash
  ARGV[1] epoch of the writer
  ARGV[2] ladder JSON
  ARGV[3] pub/sub channel
  ARGV[4] stream id
  ARGV[5] claim id of the writer

  Returns the ladder JSON in force. Errors: STALE_EPOCH <current epoch> (claim <current claim>).
]]
local refused = fenced(KEYS[1], ARGV[1], ARGV[5])
if refused then
  return refused
end
local ladder = redis.call('HGET', KEYS[1], 'ladder')
if ladder then
  return ladder
end
redis.call('HSET', KEYS[1], 'ladder', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return ARGV[2]
