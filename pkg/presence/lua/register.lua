-- register.lua: add live connections (a connect, or the re-registration
-- of connections that Redis lost).
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script);
--   ARGV[5] mode: "connect" or "restore"
--   ARGV[6] TTL of the heartbeat entries (ms)
--   ARGV[7..] 13 values per connection:
--     node key, conn id, instance, connected at (µs), node id (JSON),
--     name, organization id, collaboration id, last ping (µs, "" none),
--     last config (JSON, "" none), its time (µs), last metrics (JSON,
--     "" none), its time (µs)
-- Per connection: the entry is added (or extended), a pending offline of
-- its node is cancelled (a move: nothing to report), and a node that was
-- not online becomes online:
--   connect: reported as an online transition; during a restore window
--            the node is put in uncertain instead, and announced when the
--            window ends unless a restore claims it meanwhile;
--   restore: silently (the node was online before Redis lost its state:
--            users were told); it also takes the node out of uncertain and
--            merges the replica's last ping, config and metrics.
-- Returns {epoch id, transitions (7 strings each, see lib.lua record)}.

local mode, ttl = ARGV[5], tonumber(ARGV[6])
local eid, wend = epoch()
local out = {}
local i = 7
while i + 12 <= #ARGV do
  local k, c, inst, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local nid, name, org, collab = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local ik = info_key(k)
  redis.call('ZADD', K_CONNS, NOW + ttl, member(k, c))
  redis.call('HSET', nconns_key(k), c, inst)
  redis.call('ZREM', K_PENDING, k)
  local fresh = redis.call('SADD', K_ONLINE, k) == 1
  local have = redis.call('HMGET', ik, 'since', 'last_connect', 'ping', 'config_at', 'metrics_at')
  redis.call('HSET', ik, 'id', nid, 'name', name, 'org', org, 'collab', collab, 'instance', inst)
  if fresh or not have[1] or (mode == 'restore' and tonumber(at) < tonumber(have[1])) then
    redis.call('HSET', ik, 'since', at)
  end
  if not have[2] or tonumber(at) > tonumber(have[2]) then
    redis.call('HSET', ik, 'last_connect', at)
  end
  if fresh then
    if mode == 'connect' then
      if NOW < wend then
        redis.call('SADD', K_UNCERTAIN, k)
      else
        record(out, 'online', k, {nid, name, org, collab})
      end
    end
  elseif mode == 'restore' then
    redis.call('SREM', K_UNCERTAIN, k)
  end
  if mode == 'restore' then
    local ping, cfg, cfg_at, met, met_at = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12]
    if ping ~= '' and (not have[3] or tonumber(ping) > tonumber(have[3])) then
      redis.call('HSET', ik, 'ping', ping)
    end
    if cfg ~= '' and (not have[4] or tonumber(cfg_at) > tonumber(have[4])) then
      redis.call('HSET', ik, 'config', cfg, 'config_at', cfg_at)
    end
    if met ~= '' and (not have[5] or tonumber(met_at) > tonumber(have[5])) then
      redis.call('HSET', ik, 'metrics', met, 'metrics_at', met_at)
    end
  end
  i = i + 13
end
return {eid, out}
