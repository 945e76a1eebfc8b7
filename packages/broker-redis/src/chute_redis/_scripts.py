"""The key layout of a queue and the Lua scripts that change it atomically.

Every key of queue ``q`` carries the hash tag ``{<prefix>:q}``, so on Redis Cluster a queue
lives in one slot and each script touches one slot only.

A message is stored as one *item*: ``<id>:<deliveries>:<body>``, where ``id`` is a per-queue
counter and ``deliveries`` the number of times it was handed out before. The item sits in
exactly one place at a time:

- ``…:ready``    LIST of items, oldest first.
- ``…:delayed``  ZSET of items scored by due time (ms, Redis server clock).
- ``…:held``     HASH id -> item, for items leased in ``ON_COMPLETION`` mode; the item keeps
  the count it had when claimed, so a release puts it back unchanged.
- ``…:leased``   ZSET of ``<id>|<token>`` scored by lease expiry (ms). The token is new on
  every claim, so a settlement naming an old token finds no member and changes nothing.
- ``…:seq``      the id counter.

Scripts read the clock with ``TIME`` (effects replication makes that safe since Redis 5), so
every lease and delay is measured on one clock whatever the clients' clocks say.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["CONSUME", "PUBLISH", "PURGE", "SCRIPTS", "STATS", "Keys", "Script"]


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of one queue's keys and wake-up channel."""

    ready: str
    delayed: str
    leased: str
    held: str
    seq: str
    channel: str

    @classmethod
    def of(cls, prefix: str, queue: str) -> Keys:
        tag = f"{{{prefix}:{queue}}}"
        return cls(
            ready=f"{tag}:ready",
            delayed=f"{tag}:delayed",
            leased=f"{tag}:leased",
            held=f"{tag}:held",
            seq=f"{tag}:seq",
            channel=f"{tag}:wake",
        )

    def all(self) -> list[str]:
        return [self.ready, self.delayed, self.leased, self.held, self.seq]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, called by its SHA1 (``EVALSHA``) and loaded again on ``NOSCRIPT``."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every script call sends it.
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- One command over a long argument list, in slices Lua's unpack() can take. Slices are
-- even-sized, so score/member and field/value pairs are never split.
local function sliced(cmd, key, args)
  local res = 0
  for i = 1, #args, 4000 do
    res = redis.call(cmd, key, unpack(args, i, math.min(i + 3999, #args)))
  end
  return res
end

local function id_of_item(item)
  return string.sub(item, 1, string.find(item, ':', 1, true) - 1)
end

local function id_of_member(member)
  return string.sub(member, 1, string.find(member, '|', 1, true) - 1)
end

-- The item with one more delivery counted.
local function bumped(item)
  local a = string.find(item, ':', 1, true)
  local b = string.find(item, ':', a + 1, true)
  local count = tonumber(string.sub(item, a + 1, b - 1)) + 1
  return string.sub(item, 1, a) .. count .. string.sub(item, b)
end
"""

PUBLISH = Script(
    "publish",
    _PRELUDE
    + """
-- KEYS: ready, delayed, seq. ARGV: channel, paired ('1': delay_ms/body pairs, '0': bodies).
local channel, step = ARGV[1], (ARGV[2] == '1') and 2 or 1
local count = (#ARGV - 2) / step
local id = redis.call('INCRBY', KEYS[3], count) - count
local ready, later, now = {}, {}, nil
for i = 3, #ARGV, step do
  id = id + 1
  local item = string.format('%d:0:', id) .. ARGV[i + step - 1]
  local delay = (step == 2) and tonumber(ARGV[i]) or 0
  if delay > 0 then
    now = now or now_ms()
    later[#later + 1] = now + delay
    later[#later + 1] = item
  else
    ready[#ready + 1] = item
  end
end
-- Wake consumers only when the list was empty: a consumer waits only after finding it so.
if #ready > 0 and sliced('RPUSH', KEYS[1], ready) == #ready then
  redis.call('PUBLISH', channel, '')
end
if #later > 0 then
  sliced('ZADD', KEYS[2], later)
  redis.call('PUBLISH', channel, '')
end
return count
""",
)

CONSUME = Script(
    "consume",
    _PRELUDE
    + """
-- Settle a batch, then claim up to `want` messages.
-- KEYS: ready, delayed, leased, held.
-- ARGV: channel, mode ('c' leased / 'r' removed on receipt), token, want, lease_ms,
--       n_acks, <n_acks lease members>, then (op, arg, number) triples:
--       'r' retry   <member> <delay_ms>    'l' release <member> -
--       'e' extend  <member> <lease_ms>    'R' requeue <item> <delay_ms>    'L' put back <item> -
-- Returns: {ms until the next delayed message or lease expiry (-1: none), claimed items...}
local ready, delayed, leased, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local channel, mode, token = ARGV[1], ARGV[2], ARGV[3]
local want, lease, n_acks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local wake = false

local function push(cmd, item)
  if redis.call(cmd, ready, item) == 1 then wake = true end
end

local function later(item, delay)
  if delay > 0 then
    redis.call('ZADD', delayed, now + delay, item)
    wake = true
  else
    push('RPUSH', item)
  end
end

-- Take a lease back: the held item if `member` still names the live lease, else nil.
local function unlease(member)
  if redis.call('ZREM', leased, member) == 0 then return nil end
  local id = id_of_member(member)
  local item = redis.call('HGET', held, id)
  redis.call('HDEL', held, id)
  return item
end

-- Acks are checked first and applied last: removing them first could empty the lease
-- ZSET, and Redis would rebuild it in its compact encoding, where adding a batch of new
-- leases costs time quadratic in the batch.
local acked, acked_ids, acked_set = {}, {}, {}
if n_acks > 0 then
  local members = {}
  for i = 7, 6 + n_acks do members[#members + 1] = ARGV[i] end
  for i = 1, #members, 4000 do
    local part = redis.call('ZMSCORE', leased, unpack(members, i, math.min(i + 3999, #members)))
    for j = 1, #part do
      if part[j] then
        local m = members[i + j - 1]
        acked[#acked + 1] = m
        acked_ids[#acked_ids + 1] = id_of_member(m)
        acked_set[m] = true
      end
    end
  end
end

for i = 7 + n_acks, #ARGV, 3 do
  local op, arg, num = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if op == 'r' then
    local item = unlease(arg)
    if item then later(bumped(item), num) end
  elseif op == 'l' then
    local item = unlease(arg)
    if item then push('LPUSH', item) end
  elseif op == 'e' then
    local score = redis.call('ZSCORE', leased, arg)
    if score and tonumber(score) > now then
      redis.call('ZADD', leased, 'XX', now + num, arg)
    end
  elseif op == 'R' then
    later(arg, num)
  elseif op == 'L' then
    push('LPUSH', arg)
  end
end

if wake then redis.call('PUBLISH', channel, '') end

local out = {0}
if want > 0 then
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    sliced('ZREM', delayed, due)
    sliced('RPUSH', ready, due)
  end
  -- Lapsed leases first: they are the oldest work. Each lapse counts as a delivery.
  local lapsed = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, want)
  for _, member in ipairs(lapsed) do
    if not acked_set[member] then
      local item = unlease(member)
      if item then out[#out + 1] = bumped(item) end
    end
  end
  if #out - 1 < want then
    local popped = redis.call('LPOP', ready, want - (#out - 1))
    if popped then
      for _, item in ipairs(popped) do out[#out + 1] = item end
    end
  end
  if mode == 'c' and #out > 1 then
    local expiry, fields, scores = now + lease, {}, {}
    for i = 2, #out do
      local id = id_of_item(out[i])
      fields[#fields + 1] = id
      fields[#fields + 1] = out[i]
      scores[#scores + 1] = expiry
      scores[#scores + 1] = id .. '|' .. token
    end
    sliced('HSET', held, fields)
    sliced('ZADD', leased, scores)
  end
end

if #acked > 0 then
  sliced('ZREM', leased, acked)
  sliced('HDEL', held, acked_ids)
end

local next_due = nil
for _, key in ipairs({delayed, leased}) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[2] then
    local t = tonumber(head[2])
    if next_due == nil or t < next_due then next_due = t end
  end
end
if next_due == nil then out[1] = -1 else out[1] = math.max(0, math.ceil(next_due - now)) end
return out
""",
)

STATS = Script(
    "stats",
    _PRELUDE
    + """
-- KEYS: ready, delayed, leased. Lapsed leases count as ready: the next claim takes them.
local now = now_ms()
local ready = redis.call('LLEN', KEYS[1])
  + redis.call('ZCOUNT', KEYS[2], '-inf', now)
  + redis.call('ZCOUNT', KEYS[3], '-inf', now)
local cut = '(' .. string.format('%.17g', now)
return {ready, redis.call('ZCOUNT', KEYS[2], cut, '+inf'),
        redis.call('ZCOUNT', KEYS[3], cut, '+inf')}
""",
)

PURGE = Script(
    "purge",
    _PRELUDE
    + """
-- KEYS: ready, delayed, leased, held. Removes ready, delayed and lapsed-lease messages.
local now = now_ms()
local n = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #lapsed > 0 then
  local ids = {}
  for _, member in ipairs(lapsed) do ids[#ids + 1] = id_of_member(member) end
  sliced('ZREM', KEYS[3], lapsed)
  sliced('HDEL', KEYS[4], ids)
end
return n + #lapsed
""",
)

SCRIPTS = (PUBLISH, CONSUME, STATS, PURGE)
