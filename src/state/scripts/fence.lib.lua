-- Shared by every script (scripts.ts puts it before each one): the writer's fence. Nil while `epoch` and
-- `claim` are the stream's current ones (its meta hash says so), else the STALE_EPOCH error to return.
local function fenced(meta, epoch, claim)
  local current = redis.call('HGET', meta, 'epoch')
  local holder = redis.call('HGET', meta, 'claim')
  if current ~= epoch or holder ~= claim then
    return redis.error_reply('STALE_EPOCH ' .. tostring(current) .. ' (claim ' .. tostring(holder) .. ')')
  end
  return nil
end

