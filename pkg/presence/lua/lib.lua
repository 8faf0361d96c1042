-- lib.lua: helpers prepended to every script of this package; not a script
-- of its own. Every script is called with the same six KEYS and the same
-- first four ARGV, documented here once:
--
--   KEYS[1] conns      ZSET   one member per live connection,
--                             "<byte length of node key>:<node key><conn id>",
--                             score = its expiry, in ms of Redis time
--   KEYS[2] online     SET    keys of the online nodes (those pending
--                             offline included)
--   KEYS[3] pending    ZSET   nodes without a connection, score = the
--                             deadline (ms) of their offline decision
--   KEYS[4] uncertain  SET    nodes that a connect marked online during a
--                             restore window: announced online when it ends,
--                             unless a restore shows they were online before
--   KEYS[5] epoch      HASH   id, created, window_end (ms): the identity of
--                             this Redis state; a new id means Redis lost it
--                             (sweep.lua keeps last_sweep, server and hold_until
--                             there too)
--   KEYS[6] seq        STRING counter that numbers the decided transitions
--   ARGV[1] prefix of the per-node keys, with the same hash tag as KEYS:
--           ARGV[1].."info:"..key   HASH id, name, org, collab, instance,
--                                   since, last_connect, ping, config,
--                                   config_at, metrics, metrics_at
--                                   (times in µs of the replicas' clocks)
--           ARGV[1].."conns:"..key  HASH conn id -> instance
--   ARGV[2] the epoch id the caller knows ("" when it knows none)
--   ARGV[3] the epoch id to create when there is none
--   ARGV[4] the restore window (ms): when the epoch is created by a caller
--           that knew another one, Redis lost its state, and for this long
--           connects do not announce nodes at once (see register.lua)
--
-- Time is Redis server time (TIME), the one clock all replicas share.
-- Each script's own ARGV start at ARGV[5].

local K_CONNS, K_ONLINE, K_PENDING, K_UNCERTAIN, K_EPOCH, K_SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local P = ARGV[1]

local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function info_key(k) return P .. 'info:' .. k end
local function nconns_key(k) return P .. 'conns:' .. k end
local function member(k, c) return #k .. ':' .. k .. c end

-- split returns the node key and the connection id of a conns member.
local function split(m)
  local i = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, i - 1))
  return string.sub(m, i + 1, i + n), string.sub(m, i + n + 1)
end

-- EPOCH_CREATED is the creation time (ms) of the epoch, as a string, once
-- epoch() ran.
local EPOCH_CREATED = '0'

-- epoch returns the current epoch id and the end of its restore window
-- (0: none), creating the epoch when Redis has none.
local function epoch()
  local e = redis.call('HMGET', K_EPOCH, 'id', 'window_end', 'created')
  if e[1] then
    EPOCH_CREATED = e[3] or '0'
    return e[1], tonumber(e[2]) or 0
  end
  local wend = 0
  if ARGV[2] ~= '' then wend = NOW + tonumber(ARGV[4]) end
  EPOCH_CREATED = string.format('%d', NOW)
  redis.call('HSET', K_EPOCH, 'id', ARGV[3], 'created', EPOCH_CREATED, 'window_end', wend)
  return ARGV[3], wend
end

-- record appends a transition to out: kind, key, id, name, org, collab,
-- and "<epoch created (ms)>:<counter>", which orders transitions across
-- epochs too (the counter restarts with the state). epoch() ran before.
local function record(out, kind, k, inf)
  local seq = EPOCH_CREATED .. ':' .. redis.call('INCR', K_SEQ)
  out[#out + 1] = kind
  out[#out + 1] = k
  out[#out + 1] = inf[1] or ''
  out[#out + 1] = inf[2] or ''
  out[#out + 1] = inf[3] or ''
  out[#out + 1] = inf[4] or ''
  out[#out + 1] = seq
end

-- drop_conn removes a connection; false when it was not there. It keeps
-- the node's instance on one of its remaining connections.
local function drop_conn(k, c)
  if redis.call('ZREM', K_CONNS, member(k, c)) == 0 then return false end
  local nk, ik = nconns_key(k), info_key(k)
  local inst = redis.call('HGET', nk, c)
  redis.call('HDEL', nk, c)
  if inst and redis.call('HGET', ik, 'instance') == inst then
    local rest = redis.call('HVALS', nk)
    if rest[1] then redis.call('HSET', ik, 'instance', rest[1]) end
  end
  return true
end

-- has_conns: the node has a live connection.
local function has_conns(k) return redis.call('EXISTS', nconns_key(k)) == 1 end

-- go_offline forgets a node and records its offline, unless it was never
-- announced (still uncertain).
local function go_offline(out, k)
  local inf = redis.call('HMGET', info_key(k), 'id', 'name', 'org', 'collab')
  redis.call('SREM', K_ONLINE, k)
  redis.call('ZREM', K_PENDING, k)
  redis.call('DEL', info_key(k), nconns_key(k))
  if redis.call('SREM', K_UNCERTAIN, k) == 1 then return end
  record(out, 'offline', k, inf)
end

