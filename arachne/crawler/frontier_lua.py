"""The frontier's Lua scripts (``frontier.py`` has the key layout and the client). Each
operation is one script, so it is atomic however many spiders share the run.
"""

from __future__ import annotations

from arachne.queue.politeness import ACQUIRE_LUA

RECLAIM_BATCH = 1_000
"""Expired leases returned to their queues per lease call (bounded work per call)."""
MATCHED_AHEAD_MS = 3_600_000
"""A host with matches this run is put on the ready heap as if it had waited an hour
longer: while politeness allows, its pages go before other hosts'."""
BUSY_RECHECK_MS = 100
"""A host whose slots are all taken (by any process) is looked at again this much later,
or as soon as a slot this frontier handed out is freed."""

# Shared by the scripts (with politeness.py's slot functions).
READY_LUA = (
    ACQUIRE_LUA
    + """
-- Put a host with queued URLs on the ready heap now (or move it up to now): the lease
-- finds out whether its slots and pacing allow a request. A host with matches this run
-- goes in ahead of the others (its score an hour earlier).
local function ready(p, host, now)
  if redis.call('ZCARD', p..':q:'..host) > 0 then
    local ahead = redis.call('HEXISTS', p..':matched', host) * MATCHED_AHEAD_MS
    redis.call('ZADD', p..':ready', 'LT', now - ahead, host)
  end
end
-- A leased URL's fetch is over (answered, confirmed or given back): free its host slot
-- once, whichever of those comes first.
local function free(p, fp, host, now)
  if host_release(host, p..'|'..fp) == 1 then ready(p, host, now) end
end
local function host_of(p, fp)
  local payload = redis.call('HGET', p..':entries', fp)
  if payload then return cjson.decode(payload).h end
end
""".replace("MATCHED_AHEAD_MS", str(MATCHED_AHEAD_MS))
)

# ARGV: prefix, now, control key, then one argument per entry: bucket, member, host,
# score, kind, cap, host_cap and payload joined by \x1f (one argument, not eight: packing
# the arguments was most of an add's cost). Returns {added, duplicate, capped, capped_host}.
ADD_SCRIPT = (
    READY_LUA
    + """
local p, now = ARGV[1], tonumber(ARGV[2])
local added, dup, capped, hcapped = 0, 0, 0, 0
-- A cancelled run's frontier was cleared: a spider that has not noticed yet adds nothing.
if redis.call('GET', ARGV[3]) == 'cancelled' then return {0, #ARGV - 3, 0, 0} end
-- Budgets and the arrival counter are read once and written once per call.
local used, touched = {}, {}
local function budget(name)
  if used[name] == nil then
    used[name] = tonumber(redis.call('HGET', p..':budget', name) or '0')
  end
  return used[name]
end
local seq = tonumber(redis.call('HGET', p..':meta', 'seq') or '0')
local fields = {}
-- Fields are read as needed: most links a page offers were seen already, and those need
-- only the first two.
local function field(arg, from)
  local at = string.find(arg, '\\031', from, true)
  return string.sub(arg, from, at - 1), at + 1
end
local function offer(arg, at, bucket, member, seen)
  local host, score, kind, cap, hcap
  host, at = field(arg, at)
  score, at = field(arg, at)
  kind, at = field(arg, at)
  cap, at = field(arg, at)
  hcap, at = field(arg, at)
  if tonumber(cap) > 0 and budget(kind) >= tonumber(cap) then
    capped = capped + 1
    return
  end
  if tonumber(hcap) > 0 and budget('host:'..host) >= tonumber(hcap) then
    hcapped = hcapped + 1
    return
  end
  redis.call('SADD', seen, member)
  used[kind] = budget(kind) + 1
  if kind == 'page' then used['host:'..host] = budget('host:'..host) + 1 end
  seq = seq + 1
  local fp = bucket..':'..member
  table.insert(fields, fp)
  table.insert(fields, string.sub(arg, at))
  redis.call('ZADD', p..':q:'..host, tonumber(score) + seq, fp)
  touched[host] = true
  added = added + 1
end
for i = 4, #ARGV do
  local arg = ARGV[i]
  local bucket, at = field(arg, 1)
  local member
  member, at = field(arg, at)
  local seen = p..':seen:'..bucket
  if redis.call('SISMEMBER', seen, member) == 1 then
    dup = dup + 1
  else
    offer(arg, at, bucket, member, seen)
  end
end
if added > 0 then
  for lo = 1, #fields, 1000 do
    redis.call('HSET', p..':entries', unpack(fields, lo, math.min(lo + 999, #fields)))
  end
  for name, n in pairs(used) do redis.call('HSET', p..':budget', name, n) end
  redis.call('HSET', p..':meta', 'seq', seq)
  redis.call('HINCRBY', p..':meta', 'added', added)
  for host in pairs(touched) do ready(p, host, now) end
end
return {added, dup, capped, hcapped}
"""
)

# ARGV: prefix, fingerprint (bucket:member)…  Returns the 0-based indexes of those unseen.
UNSEEN_SCRIPT = """
local p, out = ARGV[1], {}
for i = 2, #ARGV do
  local fp = ARGV[i]
  local colon = string.find(fp, ':', 1, true)
  local bucket, member = string.sub(fp, 1, colon - 1), string.sub(fp, colon + 1)
  if redis.call('SISMEMBER', p..':seen:'..bucket, member) == 0 then
    table.insert(out, i - 2)
  end
end
return out
"""

# Put leased entries back on their queues: expired ones (reclaim) or released ones.
REQUEUE_LUA = """
local function requeue(p, fp, now, retry)
  local payload = redis.call('HGET', p..':entries', fp)
  if not payload then return end
  local e = cjson.decode(payload)
  if retry then
    e.t = (e.t or 0) + 1
    redis.call('HSET', p..':entries', fp, cjson.encode(e))
  end
  redis.call('ZADD', p..':q:'..e.h, e.s, fp)
  host_release(e.h, p..'|'..fp)
  ready(p, e.h, now)
end
"""

# ARGV: prefix, now, n, lease_ms, per_host, delay_ms, then fingerprints whose fetch is over.
# Returns {fp, payload, fp, payload…}. A host is leased from only when one of its slots is
# free and its pacing allows (politeness.py, shared with the workers' fetches); otherwise it
# moves down the heap to when it may be asked again.
LEASE_SCRIPT = (
    (
        READY_LUA
        + REQUEUE_LUA
        + """
local p, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_ms, limit, delay = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 7, #ARGV do
  local host = host_of(p, ARGV[i])
  if host then free(p, ARGV[i], host, now) end
end
local expired = redis.call('ZRANGEBYSCORE', p..':leases', '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
for _, fp in ipairs(expired) do
  redis.call('ZREM', p..':leases', fp)
  requeue(p, fp, now, false)
end
if #expired > 0 then redis.call('HINCRBY', p..':meta', 'reclaimed', #expired) end
local out = {}
local hosts = redis.call('ZRANGEBYSCORE', p..':ready', '-inf', now, 'LIMIT', 0, n)
while #out < 2 * n and #hosts > 0 do
  local again = {}
  for _, host in ipairs(hosts) do
    if #out >= 2 * n then break end
    local q = p..':q:'..host
    local head = redis.call('ZRANGE', q, 0, 0)
    if #head == 0 then
      redis.call('ZREM', p..':ready', host)
    else
      local fp = head[1]
      local wait = host_acquire(host, p..'|'..fp, now, limit, delay, lease_ms)
      if wait == 0 then
        redis.call('ZREM', q, fp)
        redis.call('ZADD', p..':leases', now + lease_ms, fp)
        table.insert(out, fp)
        table.insert(out, redis.call('HGET', p..':entries', fp))
        if redis.call('ZCARD', q) == 0 then
          redis.call('ZREM', p..':ready', host)
        else
          table.insert(again, host)
        end
      elseif wait > 0 then
        redis.call('ZADD', p..':ready', now + wait, host)
      else
        redis.call('ZADD', p..':ready', now + BUSY_RECHECK_MS, host)
      end
    end
  end
  hosts = again
end
return out
"""
    )
    .replace("RECLAIM_BATCH", str(RECLAIM_BATCH))
    .replace("BUSY_RECHECK_MS", str(BUSY_RECHECK_MS))
)

# ARGV: prefix, now, fp…  Returns how many were still leased (and now confirmed).
CONFIRM_SCRIPT = (
    READY_LUA
    + """
local p, now = ARGV[1], tonumber(ARGV[2])
local done = 0
for i = 3, #ARGV do
  local fp = ARGV[i]
  if redis.call('ZREM', p..':leases', fp) == 1 then
    local host = host_of(p, fp)
    if host then free(p, fp, host, now) end
    redis.call('HDEL', p..':entries', fp)
    done = done + 1
  end
end
redis.call('HINCRBY', p..':meta', 'confirmed', done)
return done
"""
)

# ARGV: prefix, now, retry (1: count a try), fp…  Leases given back unfinished: a clean
# stop, or a host that asked us to come back later (429/503).
RELEASE_SCRIPT = (
    READY_LUA
    + REQUEUE_LUA
    + """
local p, now, retry = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local n = 0
for i = 4, #ARGV do
  if redis.call('ZREM', p..':leases', ARGV[i]) == 1 then
    requeue(p, ARGV[i], now, retry)
    n = n + 1
  end
end
redis.call('HINCRBY', p..':meta', 'released', n)
return n
"""
)

# ARGV: prefix, expiry, fp…  Extends leases still held (XX: never re-creates a lost one).
RENEW_SCRIPT = """
local n = 0
for i = 3, #ARGV do
  n = n + redis.call('ZADD', ARGV[1]..':leases', 'XX', 'CH', ARGV[2], ARGV[i])
end
return n
"""
