-- sweep.lua: decide what time decides.
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script);
--   ARGV[5] limit: at most this many expired entries and this many due
--           pending nodes per call
--   ARGV[6] gap (ms): when no replica swept for longer than this, Redis
--           was out of everyone's reach (paused, partitioned) and no
--           replica could refresh: expiries and deadlines are held
--   ARGV[7] hold (ms): for this long, so that the live replicas refresh
--           their entries and reconnected nodes register first
-- 0. The epoch hash keeps the time of the last sweep (last_sweep, or the
--    epoch's creation before the first), the run_id of the server it ran
--    on (server) and the end of a hold (hold_until); during a hold only
--    step 3 runs. A hold starts after a gap (ARGV[6]) and when the server
--    changed: after a failover the replicas' refreshes went to the old
--    master until they learned of the new one, so their entries on the
--    new master may have expired while they were alive.
-- 1. Entries whose expiry passed are removed (their replica died or lost
--    Redis for a TTL); a node left without a connection goes offline at
--    once: its connection was gone for a TTL already.
-- 2. Pending nodes whose deadline passed and that still have no
--    connection go offline.
-- 3. After the restore window, the uncertain nodes still online are
--    announced online.
-- Whatever one call removes no other call sees: each transition is
-- returned to exactly one caller. Offline transitions of nodes never
-- announced (uncertain) are not reported.
-- Returns {epoch id, {expired entries removed, 1 if a limit was reached,
-- online nodes, 1 while holding}, transitions (7 strings each, see lib.lua
-- record)}.

local limit = tonumber(ARGV[5])
local eid, wend = epoch()
local out = {}
local expired, due = {}, {}
local last, hold, server = unpack(redis.call('HMGET', K_EPOCH, 'last_sweep', 'hold_until', 'server'))
local here = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
-- No sweep yet in this epoch: count from its creation.
last, hold = tonumber(last) or tonumber(EPOCH_CREATED), tonumber(hold) or 0
if NOW - last > tonumber(ARGV[6]) or (server and server ~= here) then
  hold = NOW + tonumber(ARGV[7])
  redis.call('HSET', K_EPOCH, 'hold_until', hold)
end
redis.call('HSET', K_EPOCH, 'last_sweep', NOW, 'server', here)
if NOW >= hold then
  expired = redis.call('ZRANGEBYSCORE', K_CONNS, '-inf', NOW, 'LIMIT', 0, limit)
  for _, m in ipairs(expired) do
    local k, c = split(m)
    drop_conn(k, c)
    if not has_conns(k) and redis.call('SISMEMBER', K_ONLINE, k) == 1 then
      go_offline(out, k)
    end
  end
  due = redis.call('ZRANGEBYSCORE', K_PENDING, '-inf', NOW, 'LIMIT', 0, limit)
  for _, k in ipairs(due) do
    redis.call('ZREM', K_PENDING, k)
    if not has_conns(k) and redis.call('SISMEMBER', K_ONLINE, k) == 1 then
      go_offline(out, k)
    end
  end
end
if NOW >= wend then
  for _, k in ipairs(redis.call('SPOP', K_UNCERTAIN, limit)) do
    if redis.call('SISMEMBER', K_ONLINE, k) == 1 then
      record(out, 'online', k, redis.call('HMGET', info_key(k), 'id', 'name', 'org', 'collab'))
    end
  end
end
local more = 0
if #expired >= limit or #due >= limit then more = 1 end
local holding = 0
if NOW < hold then holding = 1 end
return {eid, {#expired, more, redis.call('SCARD', K_ONLINE), holding}, out}
