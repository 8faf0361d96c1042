-- refresh.lua: extend the heartbeat entries of one replica's connections.
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script);
--   ARGV[5] TTL (ms)
--   ARGV[6..] conns members (see KEYS[1]), at most 2,000 per call (Lua's
--             unpack limit)
-- Only existing entries are extended; one that is missing (swept as
-- expired, or lost with Redis's state) is returned, for the replica to
-- register it again (register.lua) in the mode the epoch calls for.
-- Returns {epoch id, missing members}.

local eid = epoch()
local exp = NOW + tonumber(ARGV[5])
local n = #ARGV - 5
local missing = {}
if n == 0 then return {eid, missing} end
-- One variadic ZADD extends them all; CH counts the entries it changed.
local pairs_ = {}
for i = 6, #ARGV do
  pairs_[#pairs_ + 1] = exp
  pairs_[#pairs_ + 1] = ARGV[i]
end
local changed = redis.call('ZADD', K_CONNS, 'XX', 'CH', unpack(pairs_))
-- Fewer than all: some are missing (or were extended within the same ms).
if changed < n then
  for i = 6, #ARGV do
    if not redis.call('ZSCORE', K_CONNS, ARGV[i]) then
      missing[#missing + 1] = ARGV[i]
    end
  end
end
return {eid, missing}
