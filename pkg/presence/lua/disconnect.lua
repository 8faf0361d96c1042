-- disconnect.lua: remove connections that closed (or that a replica hands
-- over when it shuts down).
--   KEYS[1] conns ZSET, KEYS[2] online SET, KEYS[3] pending ZSET,
--   KEYS[4] uncertain SET, KEYS[5] epoch HASH, KEYS[6] seq counter;
--   ARGV[1] per-node key prefix, ARGV[2] epoch id the caller knows,
--   ARGV[3] epoch id to create, ARGV[4] restore window (ms)
--   (all described in lib.lua, which is prepended to this script);
--   ARGV[5] grace (ms)
--   ARGV[6..] 8 values per connection:
--     node key, conn id, the epoch id it was registered in ("" never),
--     node id (JSON), name, organization id, collaboration id,
--     connected at (µs)
-- A node left without a connection is put in pending with the deadline
-- max(now + grace, end of the restore window); the sweeper decides its
-- offline then, unless a connect cancels it. A connection that is not in
-- Redis although it was registered in an older epoch was lost with Redis's
-- state: its node was online (users were told), so it is restored as
-- online and pending offline the same way. Nothing is reported here.
-- Returns {epoch id}.

local grace = tonumber(ARGV[5])
local eid, wend = epoch()
local deadline = math.max(NOW + grace, wend)
local i = 6
while i + 7 <= #ARGV do
  local k, c, ce = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if drop_conn(k, c) then
    if not has_conns(k) and redis.call('SISMEMBER', K_ONLINE, k) == 1 then
      redis.call('ZADD', K_PENDING, deadline, k)
    end
  elseif ce ~= '' and ce ~= eid then
    redis.call('SREM', K_UNCERTAIN, k)
    if redis.call('SADD', K_ONLINE, k) == 1 then
      redis.call('HSET', info_key(k), 'id', ARGV[i + 3], 'name', ARGV[i + 4], 'org', ARGV[i + 5],
        'collab', ARGV[i + 6], 'since', ARGV[i + 7], 'last_connect', ARGV[i + 7], 'instance', '')
    end
    if not has_conns(k) then
      redis.call('ZADD', K_PENDING, deadline, k)
    end
  end
  i = i + 8
end
return {eid}
