//! The lease rules of [`LeaseTable`](crate::cluster::lease::LeaseTable), as Lua scripts that
//! Redis runs atomically. Expiry is Redis's own `PEXPIRE` on the lease hash, so every node
//! sees one clock: the Redis server's.

/// Acquire. KEYS: streams hash, lease, epoch counter. ARGV: stmId, node, ttl ms.
/// Returns the epoch when granted (a node re-asking for a lease it holds keeps its epoch and
/// extends it), 0 when another node holds it, -1 when the stream does not exist.
pub const ACQUIRE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local holder = redis.call('HMGET', KEYS[2], 'node', 'epoch')
if holder[1] then
  if holder[1] == ARGV[2] then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return tonumber(holder[2])
  end
  return 0
end
local epoch = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'node', ARGV[2], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return epoch
"#;

/// Compare-and-renew. KEYS: lease. ARGV: node, epoch, ttl ms. 1 if renewed, 0 if lost.
pub const RENEW: &str = r#"
local holder = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if holder[1] == ARGV[1] and holder[2] == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

/// Compare-and-release. KEYS: lease, events channel. ARGV: node, epoch, stmId. 1 if released
/// (and `released <stmId>` published, so other nodes claim it at once), 0 otherwise.
pub const RELEASE: &str = r#"
local holder = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if holder[1] == ARGV[1] and holder[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released ' .. ARGV[3])
  return 1
end
return 0
"#;

/// Store a spec. KEYS: streams hash, events channel. ARGV: stmId, spec JSON, replace (0/1).
/// Returns 1 created, 2 replaced, 0 exists (replace = 0: nothing changed), 3 unchanged (the
/// same spec is stored: nothing changed, nothing published).
pub const PUT: &str = r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local existed = stored ~= false
if existed and ARGV[3] == '0' then return 0 end
if stored == ARGV[2] then return 3 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], 'put ' .. ARGV[1])
if existed then return 2 end
return 1
"#;

/// Delete a stream. KEYS: streams hash, lease, epoch counter, events channel, cooldowns
/// hash. ARGV: stmId. 1 if it existed. Dropping the lease makes its owner's next renewal
/// fail: it stops.
pub const REMOVE: &str = r#"
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('PUBLISH', KEYS[4], 'del ' .. ARGV[1])
return existed
"#;

/// Hand a failing stream over (the rules of `handover::CooldownBook`, on the Redis clock).
/// KEYS: lease, cooldowns hash, events channel. ARGV: node, epoch, stmId, cooldown ms, max
/// cooldown ms. The cooldowns hash maps stmId to `{"fails":n,"nodes":{"<node>":<until ms>}}`.
/// Returns the cooldown in ms, or -1 when the lease is not (node, epoch)'s any more.
pub const HAND_OVER: &str = r#"
local holder = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if holder[1] ~= ARGV[1] or holder[2] ~= ARGV[2] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local raw = redis.call('HGET', KEYS[2], ARGV[3])
local rec = { fails = 0, nodes = {} }
if raw then rec = cjson.decode(raw) end
local running = {}
local any = false
for n, u in pairs(rec.nodes or {}) do
  if tonumber(u) > now then running[n] = tonumber(u); any = true end
end
local fails = 1
if any then fails = (tonumber(rec.fails) or 0) + 1 end
local cooldown = tonumber(ARGV[4]) * (2 ^ math.min(fails - 1, 20))
if cooldown > tonumber(ARGV[5]) then cooldown = tonumber(ARGV[5]) end
running[ARGV[1]] = now + cooldown
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({ fails = fails, nodes = running }))
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[3], 'released ' .. ARGV[3])
return cooldown
"#;

/// The cooldowns running now, pruning lapsed ones. KEYS: cooldowns hash. Returns a flat
/// list: stmId, node, stmId, node, ...
pub const COOLING: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  local any = false
  if ok and type(rec) == 'table' then
    for n, u in pairs(rec.nodes or {}) do
      if tonumber(u) > now then
        any = true
        table.insert(out, all[i])
        table.insert(out, n)
      end
    end
  end
  if not any then redis.call('HDEL', KEYS[1], all[i]) end
end
return out
"#;

/// The stored streams nobody holds a lease on (to claim). KEYS: streams hash. ARGV: the
/// lease key prefix (`{p}:lease:`). One round trip however many streams there are.
pub const ORPHANS: &str = r#"
local out = {}
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then table.insert(out, id) end
end
return out
"#;
