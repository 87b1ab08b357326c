//! The Lua scripts that change cluster state. Each state change and the event it causes run
//! in one script, so exactly one caller learns of each transition (first join, last leave,
//! occupied, vacated) and fires its webhook; and each bus message gets its number from the
//! same script, so every node delivers one order. Keys carry the app's hash tag `{id}`, so
//! each script touches one Redis Cluster slot.
//!
//! ```
//! // Crate-internal. The bus message a script publishes: header line, then the frame.
//! let message = "{\"s\":7,\"k\":\"e\",\"c\":\"news\"}\n{\"event\":\"greet\"}";
//! let (header, frame) = message.split_once('\n').unwrap();
//! assert!(header.starts_with("{\"s\":7,") && frame.starts_with('{'));
//! ```

use std::sync::LazyLock;

use redis::Script;

/// Subscribe one socket to one channel.
/// KEYS: node, sock, cnt, ch, pu, pi, po, seq, cache.
/// ARGV: socket, channel, user ('' for none), user_info, max_members, bus, header tail,
/// member_added frame, is_cache, is_presence.
/// Reply: {'fenced'} | {'full'} | {'ok', snap, occupied, added, ids, infos[, cached]}.
pub(crate) static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'fenced'} end
local field = ARGV[1] .. '|' .. ARGV[2]
local occupied, added = 0, 0
if redis.call('HSETNX', KEYS[2], field, ARGV[3]) == 1 then
  if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[5], ARGV[3]) == 0
     and redis.call('HLEN', KEYS[5]) >= tonumber(ARGV[5]) then
    redis.call('HDEL', KEYS[2], field)
    return {'full'}
  end
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
    redis.call('ZADD', KEYS[4], 0, ARGV[2]); occupied = 1
  end
  if ARGV[3] ~= '' and redis.call('HINCRBY', KEYS[5], ARGV[3], 1) == 1 then
    redis.call('HSET', KEYS[6], ARGV[3], ARGV[4])
    local s = redis.call('INCR', KEYS[8])
    redis.call('ZADD', KEYS[7], s, ARGV[3])
    redis.call('PUBLISH', ARGV[6], '{"s":' .. s .. ',' .. ARGV[7] .. '\n' .. ARGV[8])
    added = 1
  end
end
local snap = tonumber(redis.call('GET', KEYS[8]) or '0')
local ids, infos = {}, {}
if ARGV[10] == '1' then
  ids = redis.call('ZRANGE', KEYS[7], 0, -1)
  if #ids > 0 then infos = redis.call('HMGET', KEYS[6], unpack(ids)) end
end
local reply = {'ok', snap, occupied, added, ids, infos}
if ARGV[9] == '1' then
  local cached = redis.call('GET', KEYS[9])
  if cached then reply[7] = cached end
end
return reply
"#,
    )
});

/// Unsubscribe one socket from one channel (also the reaper's step for a dead node's
/// subscription). KEYS: sock, cnt, ch, pu, pi, po, seq. ARGV: socket, channel, bus, header
/// tail, expected user ('' for none), member_removed frame. Reply: {removed, vacated}; both 0
/// when the subscription was already gone (left, or reaped by someone else).
pub(crate) static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local field = ARGV[1] .. '|' .. ARGV[2]
local user = redis.call('HGET', KEYS[1], field)
if not user then return {0, 0} end
if user ~= ARGV[5] then return redis.error_reply('switchboard: member mismatch for ' .. field) end
redis.call('HDEL', KEYS[1], field)
local removed, vacated = 0, 0
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2]); redis.call('ZREM', KEYS[3], ARGV[2]); vacated = 1
end
if user ~= '' and redis.call('HINCRBY', KEYS[4], user, -1) <= 0 then
  redis.call('HDEL', KEYS[4], user); redis.call('HDEL', KEYS[5], user); redis.call('ZREM', KEYS[6], user)
  local s = redis.call('INCR', KEYS[7])
  redis.call('PUBLISH', ARGV[3], '{"s":' .. s .. ',' .. ARGV[4] .. '\n' .. ARGV[6])
  removed = 1
end
return {removed, vacated}
"#,
    )
});

/// Publish one message on the app's bus, numbered; a cache channel's backend event is kept.
/// KEYS: seq, cache. ARGV: bus, header tail, frame, remember (0/1), ttl ms. Reply: its number.
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local s = redis.call('INCR', KEYS[1])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5]) end
redis.call('PUBLISH', ARGV[1], '{"s":' .. s .. ',' .. ARGV[2] .. '\n' .. ARGV[3])
return s
"#,
    )
});

/// Register a node (or renew its lease). KEYS: node, nodes, seq, conns. ARGV: node id, lease
/// ms, open connections, register (1: create the node key; 0: renew only).
/// Reply: -1 if the node key is gone (fenced), else the app's current bus number.
pub(crate) static BEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[4] == '1' then redis.call('SET', KEYS[1], '1')
elseif redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return tonumber(redis.call('GET', KEYS[3]) or '0')
"#,
    )
});

/// Nodes whose lease has run out (Redis's clock). KEYS: nodes. Reply: their ids.
pub(crate) static DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
"#,
    )
});

/// Claim a dead node for reaping and fence it: its node key goes, so its next beat or join
/// fails and it closes its sockets. KEYS: reap claim, node. ARGV: claimer. Reply: 1 if claimed.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 30000) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"#,
    )
});

/// A reaped node's last keys. KEYS: sock, nodes, conns. ARGV: node id.
pub(crate) static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#,
    )
});

/// Take a cluster connection slot. KEYS: conns. ARGV: node id, max. Reply: 1 if taken.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"#,
    )
});

/// Occupied channels with a prefix and their counts, in one round trip. KEYS: ch, cnt.
/// ARGV: prefix, the key of a channel's presence users without the channel name.
/// Reply: flat {name, subscriptions, users (-1: not presence)}.
pub(crate) static CHANNELS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local names
if ARGV[1] == '' then names = redis.call('ZRANGE', KEYS[1], 0, -1)
else names = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], '[' .. ARGV[1] .. '\255') end
local out = {}
for _, name in ipairs(names) do
  out[#out + 1] = name
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  if string.sub(name, 1, 9) == 'presence-' then
    out[#out + 1] = redis.call('HLEN', ARGV[2] .. name)
  else
    out[#out + 1] = -1
  end
end
return out
"#,
    )
});

/// Phoenix rooms: track a member and broadcast its join diff.
/// KEYS: node, sock, metas, names, order, seq. ARGV: member, sock field, meta JSON, username
/// JSON string, max members, bus, header tail, the diff's frame up to its payload.
/// Reply: {'fenced'} | {'full'} | {'ok', its bus number, order before, metas flat, names flat}.
pub(crate) static ROOM_JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'fenced'} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 and redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[5]) then
  return {'full'}
end
local order = redis.call('ZRANGE', KEYS[5], 0, -1)
local metas = redis.call('HGETALL', KEYS[3])
local names = redis.call('HGETALL', KEYS[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
local s = redis.call('INCR', KEYS[6])
redis.call('ZADD', KEYS[5], s, ARGV[1])
redis.call('PUBLISH', ARGV[6], '{"s":' .. s .. ',' .. ARGV[7] .. '\n' .. ARGV[8]
  .. '{"joins":{' .. ARGV[4] .. ':{"metas":[' .. ARGV[3] .. ']}},"leaves":{}}]')
return {'ok', s, order, metas, names}
"#,
    )
});

/// Phoenix rooms: untrack a member and broadcast its leave diff, built from what Redis holds
/// (so a reaper, which never saw the member, announces the same leave). KEYS: sock, metas,
/// names, order, seq. ARGV: sock field, bus, header tail, the diff's frame up to its payload.
/// Reply: 1 if the member left, 0 if it was gone already.
pub(crate) static ROOM_LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local member = redis.call('HGET', KEYS[1], ARGV[1])
if not member then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local meta = redis.call('HGET', KEYS[2], member)
local name = redis.call('HGET', KEYS[3], member)
redis.call('HDEL', KEYS[2], member); redis.call('HDEL', KEYS[3], member); redis.call('ZREM', KEYS[4], member)
if not meta or not name then return 0 end
local s = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[2], '{"s":' .. s .. ',' .. ARGV[3] .. '\n' .. ARGV[4]
  .. '{"joins":{},"leaves":{' .. name .. ':{"metas":[' .. meta .. ']}}}]')
return 1
"#,
    )
});

/// Phoenix rooms: replace a member's meta and broadcast the update diff (built by the member's
/// node, the only writer of its meta). KEYS: sock, metas, seq. ARGV: sock field, member, new
/// meta, bus, header tail, frame. Reply: 1 if updated, 0 if the member was gone (reaped).
pub(crate) static ROOM_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local s = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], '{"s":' .. s .. ',' .. ARGV[5] .. '\n' .. ARGV[6])
return 1
"#,
    )
});

// The gateway protocol's topics. Keys: gt (HASH topic → subscriptions, cluster-wide), gc
// (HASH connection id → node), gsock:N (HASH `conn|topic` → subject, node N's
// subscriptions), gconn:N (HASH conn → the presence frame backends get if N dies), gs:S (HASH
// node → connections of subject S), gsub:N (SET of subjects with connections on N),
// gsubj:S (SET of `conn|topic` of subject S's own topics, for admin unsubscribes).

/// Take a connection slot of a subject, at most `limit` cluster-wide (0: no limit).
/// KEYS: node, gs:S, gsub:N. ARGV: node id, limit, subject. Reply: 1 taken, 0 full, -1 fenced.
pub(crate) static GATEWAY_RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(n) end
if tonumber(ARGV[2]) > 0 and total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"#,
    )
});

/// Give back a subject's slot taken on node N. KEYS: gs:S, gsub:N. ARGV: node id, subject.
pub(crate) static GATEWAY_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
"#,
    )
});

/// Register a connection with its automatic topics. KEYS: node, gconn:N, gc, gt, gsock:N,
/// seq. ARGV: conn, node id, subject, goodbye frame, then its automatic topics. Reply: the
/// bus number its topics take messages after, or -1 if fenced.
pub(crate) static GATEWAY_JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
for i = 5, #ARGV do
  if redis.call('HSETNX', KEYS[5], ARGV[1] .. '|' .. ARGV[i], ARGV[3]) == 1 then
    redis.call('HINCRBY', KEYS[4], ARGV[i], 1)
  end
end
return tonumber(redis.call('GET', KEYS[6]) or '0')
"#,
    )
});

/// Subscribe a connection to one of its own topics, on the node N it joined under.
/// KEYS: gsock:N, gt, gsubj:S, seq, gc. ARGV: `conn|topic`, topic, subject, conn, node id.
/// Reply: the bus number it takes messages after, or -1 if the connection is not N's (it was
/// reaped: its node was fenced).
pub(crate) static GATEWAY_SUBSCRIBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[5], ARGV[4]) ~= ARGV[5] then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if ARGV[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[1]) end
end
return tonumber(redis.call('GET', KEYS[4]) or '0')
"#,
    )
});

/// Unsubscribe a connection from topics (a leave passes all of them, and the connection
/// goes too), on the node the connection joined under (its `gc` entry; the caller's node if
/// none), so a leave after a fence still clears the old id's entries. KEYS: gt, gc.
/// ARGV: conn, gsubj base, leaving (0/1), gsock base, gconn base, the caller's node id, then
/// the topics. Reply: {subscriptions ended, 1 if this call removed the connection's `gc`
/// entry (whoever removes it, this leave or a reaper, announces the disconnect)}.
pub(crate) static GATEWAY_UNSUBSCRIBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local owner = redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[6]
local sock = ARGV[4] .. owner
local ended, owned = 0, 0
for i = 7, #ARGV do
  local field = ARGV[1] .. '|' .. ARGV[i]
  local subject = redis.call('HGET', sock, field)
  if subject then
    redis.call('HDEL', sock, field)
    if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
    if subject ~= '' then redis.call('SREM', ARGV[2] .. subject, field) end
    ended = ended + 1
  end
end
if ARGV[3] == '1' then
  redis.call('HDEL', ARGV[5] .. owner, ARGV[1])
  owned = redis.call('HDEL', KEYS[2], ARGV[1])
end
return {ended, owned}
"#,
    )
});

/// Publish a gateway message and read the topic's subscriptions at that instant (what
/// `delivered` answers). KEYS: seq, gt. ARGV: bus, header tail, frame, topic.
pub(crate) static GATEWAY_PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local s = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '{"s":' .. s .. ',' .. ARGV[2] .. '\n' .. ARGV[3])
return tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
"#,
    )
});

/// Admin close of one connection ('' : all): count them and tell every node. KEYS: seq, gc.
/// ARGV: bus, header tail, conn, frame (the close code and reason). Reply: how many.
pub(crate) static GATEWAY_CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n
if ARGV[3] == '' then n = redis.call('HLEN', KEYS[2]) else n = redis.call('HEXISTS', KEYS[2], ARGV[3]) end
local s = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '{"s":' .. s .. ',' .. ARGV[2] .. '\n' .. ARGV[4])
return n
"#,
    )
});

/// Admin unsubscribe of a subject: tell every node, and answer the subject's own
/// subscriptions at that instant (the caller counts those its patterns match).
/// KEYS: seq, gsubj:S. ARGV: bus, header tail, patterns JSON. Reply: `conn|topic` list.
pub(crate) static GATEWAY_UNSUBSCRIBE_SUBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local members = redis.call('SMEMBERS', KEYS[2])
local s = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '{"s":' .. s .. ',' .. ARGV[2] .. '\n' .. ARGV[3])
return members
"#,
    )
});

/// Reap a dead node's gateway state: its subscriptions leave the counts, its subjects'
/// slots go, and backends get each of its connections' goodbye on `secure/inbound`.
/// KEYS: gsock:N, gconn:N, gc, gt, gsub:N, seq. ARGV: node id, gsubj key base, gs key base,
/// bus, header tail (for `secure/inbound`). Reply: how many connections.
pub(crate) static GATEWAY_REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local subs = redis.call('HGETALL', KEYS[1])
for i = 1, #subs, 2 do
  local field, subject = subs[i], subs[i + 1]
  local topic = string.sub(field, string.find(field, '|', 1, true) + 1)
  if redis.call('HINCRBY', KEYS[4], topic, -1) <= 0 then redis.call('HDEL', KEYS[4], topic) end
  if subject ~= '' then redis.call('SREM', ARGV[2] .. subject, field) end
end
redis.call('DEL', KEYS[1])
local conns = redis.call('HGETALL', KEYS[2])
for i = 1, #conns, 2 do
  -- Announced by whoever removes its `gc` entry: here, unless its own leave did first.
  if redis.call('HDEL', KEYS[3], conns[i]) == 1 then
    local s = redis.call('INCR', KEYS[6])
    redis.call('PUBLISH', ARGV[4], '{"s":' .. s .. ',' .. ARGV[5] .. '\n' .. conns[i + 1])
  end
end
redis.call('DEL', KEYS[2])
for _, subject in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('HDEL', ARGV[3] .. subject, ARGV[1])
end
redis.call('DEL', KEYS[5])
return #conns / 2
"#,
    )
});
