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

/// Delete a stream. KEYS: streams hash, lease, epoch counter, events channel. ARGV: stmId.
/// 1 if it existed. Dropping the lease makes its owner's next renewal fail: it stops.
pub const REMOVE: &str = r#"
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PUBLISH', KEYS[4], 'del ' .. ARGV[1])
return existed
"#;
