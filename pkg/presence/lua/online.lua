-- online.lua: list the online nodes, one consistent snapshot; writes
-- nothing.
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script);
--   no ARGV of its own (the epoch is neither read nor created).
-- Returns one entry per online node with at least one live connection
-- (those pending offline are left out): {key, live connections, info as a
-- flat field/value list (see lib.lua ARGV[1])}.

local out = {}
for _, k in ipairs(redis.call('SMEMBERS', K_ONLINE)) do
  local n = redis.call('HLEN', nconns_key(k))
  if n > 0 then
    out[#out + 1] = {k, n, redis.call('HGETALL', info_key(k))}
  end
end
return out
