-- update.lua: set fields of an online node's info (ping, config,
-- metrics).
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script; the
--   epoch is neither read nor created);
--   ARGV[5] node key
--   ARGV[6..] field, value pairs
-- A node that is not online is left alone: an update never brings a node
-- online, nor recreates the info of one that went offline.
-- Returns 1 when set, 0 when the node is not online.

local k = ARGV[5]
if redis.call('SISMEMBER', K_ONLINE, k) == 0 then return 0 end
local fv = {}
for i = 6, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('HSET', info_key(k), unpack(fv))
return 1
