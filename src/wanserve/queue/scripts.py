"""The Lua scripts behind RedisQueue: each multi-key change runs as one atomic script.

Keys under the prefix P (see `RedisQueue` for the layout):
    P:q:ready    ZSET  score -priority, member "<start tag 20 digits>:<seq 20 digits>:<task id>"
                       (fair share within a score, then FIFO: equal scores sort by member;
                       queue/shares.py)
    P:q:vtime    HASH  priority -> virtual time (the greatest start tag leased at that priority)
    P:q:share    HASH  "<priority>:<owner>" -> the finish tag of the owner's last task there
    P:q:delayed  ZSET  score due time, member task id
    P:q:leases   ZSET  score lease deadline, member task id
    P:q:job:<id> HASH  state (ready|delayed|leased), priority, member, token, worker, deadline
    P:q:seq      counter for the FIFO part of ready members (ties of the start tag)
    P:q:notify   LIST  wake-up tokens for workers blocked in BLPOP
    P:cancel:<id>      the cancel flag (shared contract: remote engines read it)
    P:task:<id>        pub/sub channel for live messages
    P:workers    HASH  worker id -> its latest pool report (JSON with "at"; stale ones pruned)
Task ids are looked up from inside the scripts (hence ARGV[1] = P), so the queue needs a single
Redis/Valkey node or a primary with replicas, not Redis Cluster.
"""

from __future__ import annotations

__all__ = ["ACK", "CANCEL", "ENQUEUE", "HEARTBEAT", "LEASE", "POSITION", "RELEASE", "REQUEUE"]

NOTIFY_KEEP = 255  # wake-up tokens kept at most; a woken worker wakes the next one (see LEASE)

# Shared helpers. _make_ready puts a task back at its original place among equal priorities.
_D20 = "%d" * 20  # a Lua pattern: 20 digits

_HELPERS = f"""
local P = ARGV[1]
local function job_key(id) return P .. ':q:job:' .. id end
local function wake()
  redis.call('LPUSH', P .. ':q:notify', '1')
  redis.call('LTRIM', P .. ':q:notify', 0, {NOTIFY_KEEP})
end
local function make_ready(id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'priority', 'member')
  redis.call('ZADD', P .. ':q:ready', -tonumber(f[1]), f[2])
  redis.call('HSET', key, 'state', 'ready')
  redis.call('HDEL', key, 'token', 'worker', 'deadline')
end
local function promote_due(now)
  local due = redis.call('ZRANGEBYSCORE', P .. ':q:delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. ':q:delayed', id)
    make_ready(id)
  end
  if #due > 0 then wake() end
end
local function requeue_expired(now)
  local returned = {{}}
  local expired = redis.call('ZRANGEBYSCORE', P .. ':q:leases', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('ZREM', P .. ':q:leases', id)
    if redis.call('EXISTS', P .. ':cancel:' .. id) == 1 then
      redis.call('DEL', job_key(id))
    else
      make_ready(id)
      table.insert(returned, id)
    end
  end
  if #returned > 0 then wake() end
  return returned
end
-- A ready member's start tag and task id (the layout before fair share: its seq as the tag).
local function parse_member(member)
  local start, id = string.match(member, '^({_D20}):{_D20}:(.*)$')
  if start then return tonumber(start), id end
  return tonumber(string.sub(member, 1, 20)) or 0, string.sub(member, 22)
end
local function held(id, token)
  local f = redis.call('HMGET', job_key(id), 'state', 'token')
  return f[1] == 'leased' and f[2] == token
end
"""

# ARGV: P, id, priority, now, delay_s, owner, stride -> 1 added, 0 already held
ENQUEUE = (
    _HELPERS
    + """
local id, priority, now, delay = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local share, stride = priority .. ':' .. ARGV[6], tonumber(ARGV[7])
local key = job_key(id)
if redis.call('EXISTS', key) == 1 then return 0 end
local seq = redis.call('INCR', P .. ':q:seq')
local vtime = tonumber(redis.call('HGET', P .. ':q:vtime', priority) or '0')
local last = tonumber(redis.call('HGET', P .. ':q:share', share) or '0')
local start = math.max(vtime, last)
redis.call('HSET', P .. ':q:share', share, string.format('%d', start + stride))
local member = string.format('%020d', start) .. ':' .. string.format('%020d', seq) .. ':' .. id
redis.call('HSET', key, 'priority', priority, 'member', member, 'state', 'ready')
if delay > 0 then
  redis.call('HSET', key, 'state', 'delayed')
  redis.call('ZADD', P .. ':q:delayed', now + delay, id)
else
  make_ready(id)
  wake()
end
return 1
"""
)

# ARGV: P, now -> ids returned to the ready set
REQUEUE = (
    _HELPERS
    + """
local now = tonumber(ARGV[2])
promote_due(now)
return requeue_expired(now)
"""
)

# ARGV: P, now, ttl, worker, token -> {id or false, next time something is due or false}
LEASE = (
    _HELPERS
    + """
local now, ttl, worker, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
promote_due(now)
requeue_expired(now)
local top = redis.call('ZPOPMIN', P .. ':q:ready')
local taken = false
if #top > 0 then
  local start
  start, taken = parse_member(top[1])
  -- the virtual time of the task's priority moves up to its start tag (never back)
  local priority = redis.call('HGET', job_key(taken), 'priority')
  local vtime = tonumber(redis.call('HGET', P .. ':q:vtime', priority) or '0')
  if start > vtime then
    redis.call('HSET', P .. ':q:vtime', priority, string.format('%d', start))
  end
  local deadline = now + ttl
  redis.call('HSET', job_key(taken), 'state', 'leased', 'token', token, 'worker', worker,
             'deadline', tostring(deadline))
  redis.call('ZADD', P .. ':q:leases', deadline, taken)
  -- chain the wake-up: another blocked worker may take the next ready task
  if redis.call('ZCARD', P .. ':q:ready') > 0 then wake() end
end
local next_due = false
for _, name in ipairs({'delayed', 'leases'}) do
  local first = redis.call('ZRANGE', P .. ':q:' .. name, 0, 0, 'WITHSCORES')
  if #first > 0 and (not next_due or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
return {taken, next_due}
"""
)

# ARGV: P, id, token, deadline -> 0 lost, 1 renewed, 2 renewed but cancelled
HEARTBEAT = (
    _HELPERS
    + """
local id, token, deadline = ARGV[2], ARGV[3], ARGV[4]
if not held(id, token) then return 0 end
redis.call('HSET', job_key(id), 'deadline', deadline)
redis.call('ZADD', P .. ':q:leases', deadline, id)
if redis.call('EXISTS', P .. ':cancel:' .. id) == 1 then return 2 end
return 1
"""
)

# ARGV: P, id, token -> 1 done, 0 lost
ACK = (
    _HELPERS
    + """
local id, token = ARGV[2], ARGV[3]
if not held(id, token) then return 0 end
redis.call('ZREM', P .. ':q:leases', id)
redis.call('DEL', job_key(id))
return 1
"""
)

# ARGV: P, id, token, now, delay_s -> 1 released (or dropped when cancelled), 0 lost
RELEASE = (
    _HELPERS
    + """
local id, token, now, delay = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if not held(id, token) then return 0 end
redis.call('ZREM', P .. ':q:leases', id)
if redis.call('EXISTS', P .. ':cancel:' .. id) == 1 then
  redis.call('DEL', job_key(id))
elseif delay > 0 then
  redis.call('HSET', job_key(id), 'state', 'delayed')
  redis.call('HDEL', job_key(id), 'token', 'worker', 'deadline')
  redis.call('ZADD', P .. ':q:delayed', now + delay, id)
else
  make_ready(id)
  wake()
end
return 1
"""
)

# ARGV: P, id, flag ttl (s), message -> 1 removed or flagged, 0 unknown
CANCEL = (
    _HELPERS
    + """
local id, ttl, message = ARGV[2], ARGV[3], ARGV[4]
local key = job_key(id)
local f = redis.call('HMGET', key, 'state', 'member')
if not f[1] then return 0 end
redis.call('SET', P .. ':cancel:' .. id, '1', 'EX', ttl)
if f[1] ~= 'leased' then
  redis.call('ZREM', P .. ':q:ready', f[2])
  redis.call('ZREM', P .. ':q:delayed', id)
  redis.call('DEL', key)
end
redis.call('PUBLISH', P .. ':task:' .. id, message)
return 1
"""
)

# ARGV: P, id, now -> 0-based rank among ready tasks, or -1 when not waiting
POSITION = (
    _HELPERS
    + """
local id, now = ARGV[2], tonumber(ARGV[3])
promote_due(now)
local f = redis.call('HMGET', job_key(id), 'state', 'member')
if f[1] ~= 'ready' then return -1 end
return redis.call('ZRANK', P .. ':q:ready', f[2])
"""
)

AHEAD = (
    _HELPERS
    + """
local id, now, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
promote_due(now)
local f = redis.call('HMGET', job_key(id), 'state', 'member')
if f[1] ~= 'ready' then return false end
local rank = redis.call('ZRANK', P .. ':q:ready', f[2])
if rank == 0 or limit <= 0 then return {} end
return redis.call('ZRANGE', P .. ':q:ready', 0, math.min(rank, limit) - 1)
"""
)
