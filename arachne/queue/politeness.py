"""Politeness across the whole cluster: per-host request slots and pacing in Redis.

Every request Arachne makes to a host, a spider's page or a worker's image or re-check,
first takes one of that host's ``per_host_concurrency`` slots here, so any number of
processes on any machines never have more requests in flight to one host than the limit,
nor start them closer together than the host's current gap. A slot is a member of the
host's sorted set scored by its expiry: a process killed while holding one frees it when
the expiry passes.

The gap is the largest of the configured delay, robots.txt's ``Crawl-delay`` (capped) and
an adaptive back-off: 429s, 5xx answers and timeouts double it (from 1 s up to
``host_backoff_max``), slow answers raise it to their latency, good answers halve it. A
``Retry-After`` blocks the host until then: its frontier queue waits, and workers put its
images back for later instead of waiting.

Keys (``keys.host_slots(host)``, ``keys.host_state(host)``):
  slots   ZSET  holder token → slot expiry (ms)
  state   HASH  next (ms, earliest next start), blocked_until (ms), backoff (ms),
                crawl_delay (ms), reason (why it is blocked or backed off)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis import Redis

from arachne.queue import keys

BUSY = -1
"""``acquire`` result: every slot of the host is taken (ask again shortly)."""
SLOW_ANSWER_MS = 5_000
"""An answer slower than this spaces the host's next requests by its latency."""
STATE_TTL = 7 * 24 * 3600
"""A host's pacing state is forgotten after a week without requests."""

# Shared Lua: take a slot of host H for token T at `now`, or say how long to wait
# (milliseconds; -1 when every slot is taken). Used by the frontier's lease script too.
ACQUIRE_LUA = """
local function host_acquire(host, token, now, limit, base_delay, slot_ms)
  local slots, state = 'arachne:host:'..host..':slots', 'arachne:host:'..host..':state'
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local st = redis.call('HMGET', state, 'next', 'blocked_until', 'backoff', 'crawl_delay')
  local wait = math.max(tonumber(st[1] or '0') - now, tonumber(st[2] or '0') - now, 0)
  if wait > 0 then return wait end
  if redis.call('ZCARD', slots) >= limit then return -1 end
  redis.call('ZADD', slots, now + slot_ms, token)
  redis.call('PEXPIRE', slots, slot_ms + 60000)
  local gap = math.max(base_delay, tonumber(st[3] or '0'), tonumber(st[4] or '0'))
  if gap > 0 then
    redis.call('HSET', state, 'next', now + gap)
    redis.call('EXPIRE', state, STATE_TTL)
  end
  return 0
end
local function host_release(host, token)
  return redis.call('ZREM', 'arachne:host:'..host..':slots', token)
end
""".replace("STATE_TTL", str(STATE_TTL))

_ACQUIRE = (
    ACQUIRE_LUA
    + """
return host_acquire(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
                    tonumber(ARGV[5]), tonumber(ARGV[6]))
"""
)

# ARGV: host, token ('' for none), now, status (0: no answer), latency_ms, retry_after_ms,
# backoff_max_ms, reason. Frees the token's slot and adapts the host's pacing.
_DONE = (
    ACQUIRE_LUA
    + """
local host, token, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local status, latency, retry_after = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local backoff_max, reason = tonumber(ARGV[7]), ARGV[8]
if token ~= '' then host_release(host, token) end
local state = 'arachne:host:'..host..':state'
local backoff = tonumber(redis.call('HGET', state, 'backoff') or '0')
if retry_after > 0 then
  local until_ms = now + retry_after
  if until_ms > tonumber(redis.call('HGET', state, 'blocked_until') or '0') then
    redis.call('HSET', state, 'blocked_until', until_ms, 'reason', reason)
  end
elseif status == 429 or status >= 500 or status == 0 then
  backoff = math.min(math.max(1000, backoff * 2), backoff_max)
  redis.call('HSET', state, 'backoff', backoff, 'reason', reason)
  local nxt = tonumber(redis.call('HGET', state, 'next') or '0')
  redis.call('HSET', state, 'next', math.max(nxt, now + backoff))
elseif latency > SLOW_ANSWER_MS then
  backoff = math.min(math.max(backoff, latency), backoff_max)
  redis.call('HSET', state, 'backoff', backoff, 'reason', 'slow answers')
elseif backoff > 0 then
  backoff = math.floor(backoff / 2)
  if backoff < 100 then backoff = 0 end
  redis.call('HSET', state, 'backoff', backoff)
end
redis.call('EXPIRE', state, STATE_TTL)
return backoff
""".replace("SLOW_ANSWER_MS", str(SLOW_ANSWER_MS)).replace("STATE_TTL", str(STATE_TTL))
)


@dataclass(frozen=True)
class Answer:
    """What a host did with one request, for its pacing."""

    status: int  # HTTP status; 0: no answer (timeout, connection refused)
    latency: float = 0.0  # seconds
    retry_after: float | None = None  # seconds the host asked us to wait (429/503)
    reason: str = ""


class HostPoliteness:
    """Per-host slots and pacing shared by every Arachne process on one Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        concurrency: int = 4,
        delay: float = 0.0,
        slot_seconds: float = 120.0,
        backoff_max: float = 300.0,
        retry_after_max: float = 3600.0,
    ) -> None:
        self.redis = redis
        self.concurrency = concurrency
        self.delay_ms = int(delay * 1000)
        self.slot_ms = int(slot_seconds * 1000)
        self.backoff_max_ms = int(backoff_max * 1000)
        self.retry_after_max = retry_after_max  # a hostile Retry-After cannot park a host
        self._acquire = redis.register_script(_ACQUIRE)
        self._done = redis.register_script(_DONE)

    def acquire(self, host: str, token: str) -> float:
        """0 when ``token`` now holds one of ``host``'s slots, else seconds to wait
        (``BUSY`` when every slot is taken)."""
        wait = int(
            self._acquire(
                args=[
                    host,
                    token,
                    int(time.time() * 1000),
                    self.concurrency,
                    self.delay_ms,
                    self.slot_ms,
                ]
            )
        )
        return BUSY if wait < 0 else wait / 1000

    def done(self, host: str, token: str | None, answer: Answer) -> float:
        """Free the slot (if ``token``) and adapt the host's pacing to the answer; returns
        the host's back-off now (seconds)."""
        retry_ms = 0
        if answer.retry_after:
            retry_ms = int(min(answer.retry_after, self.retry_after_max) * 1000)
        backoff = self._done(
            args=[
                host,
                token or "",
                int(time.time() * 1000),
                answer.status,
                int(answer.latency * 1000),
                retry_ms,
                self.backoff_max_ms,
                answer.reason or f"HTTP {answer.status}",
            ]
        )
        return int(backoff) / 1000

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        """robots.txt's ``Crawl-delay`` for us (already capped by the caller)."""
        state = keys.host_state(host)
        self.redis.hset(state, "crawl_delay", int(seconds * 1000))
        self.redis.expire(state, STATE_TTL)

    def state(self, host: str) -> dict[str, float | str]:
        raw = self.redis.hgetall(keys.host_state(host))
        out: dict[str, float | str] = {}
        for k, v in raw.items():
            name, value = k.decode(), v.decode()
            out[name] = value if name == "reason" else int(value) / 1000
        out["in_flight"] = int(self.redis.zcard(keys.host_slots(host)))
        return out

    async def wait_for_slot(self, host: str, token: str, max_wait: float) -> float:
        """Wait (asynchronously) until ``token`` holds one of ``host``'s slots and return 0;
        or, when the host asks for more than ``max_wait`` seconds, return what it still
        asks for without holding anything (the caller puts the request off)."""
        waited = 0.0
        while True:
            wait = self.acquire(host, token)
            if wait == 0:
                return 0.0
            if wait != BUSY and waited + wait > max_wait:
                return wait
            if waited >= max_wait:
                return 1.0  # every slot stayed taken: try again a little later
            step = 0.05 if wait == BUSY else min(wait, 0.5)
            await asyncio.sleep(step)
            waited += step
