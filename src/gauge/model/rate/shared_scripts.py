"""The Lua scripts that update a shared connection key atomically in Redis.

Every time is Redis's own (`TIME`), so processes on machines whose clocks
disagree share one schedule; each reply carries Redis's time, from which a
process maps it onto its own monotonic clock. Floats travel as strings (Lua
numbers in replies become integers). Names of the hash fields are in
shared_names.KeyNames.

    take   a block of grants from the request budget's schedule (GCRA): n units
           at `rate` occupy n / rate seconds of it, from the later of its end, now
           (less the burst) and the pause; a pending adjustment (debt) moves the
           schedule first
    room   the token budget's window: every process's sends of the last `span`
           seconds, one sorted-set member each ("process|seq|tokens", scored by
           when it went), as the provider's window holds them. Applies this
           process's news first (a send re-dated to when it went and re-sized to
           what its reply used, dropped after a 429, or added), then admits the
           sends asked for, in order, while they fit under `limit`; for the first
           that does not, answers when enough of the window will have expired.
           With every send admitted and the window less than half full, it also
           lets the process hold some room (one member) for its next sends
    pause  hold the key until a deadline (the later one wins)
    sync   one process's periodic round trip: renew its concurrency lease (and
           take its share of the shared limit), run the shared adaptive-concurrency
           controller, write and read the learned limits, the fatal-error streak
           and the successful sends (rate inference), read the pause
"""

from __future__ import annotations

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function f(x) return string.format('%.6f', x) end
"""

TAKE = (
    _COMMON
    + """
local rate, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local tau, adjust = tonumber(ARGV[4]), tonumber(ARGV[5])
local got = redis.call('HMGET', KEYS[1], ARGV[1], 'pause')
local tat, pause = tonumber(got[1]) or 0, tonumber(got[2]) or 0
local floor = math.max(now - tau, pause)
local start = math.max(math.max(tat, floor) + adjust, floor)
redis.call('HSET', KEYS[1], ARGV[1], f(start + n / rate))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {f(start - now), f(now), f(pause)}
"""
)

PAUSE = (
    _COMMON
    + """
local deadline = tonumber(ARGV[1])
if deadline > (tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0) then
  redis.call('HSET', KEYS[1], 'pause', f(deadline))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return f(now)
"""
)

SYNC = (
    _COMMON
    + """
local H, L, P, S = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pid, wanted, in_flight = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local grown, cuts, fixed = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local start, maximum, ttl, cooldown = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]),
  tonumber(ARGV[10])
local record, stop, outbox, since = ARGV[11], ARGV[12], ARGV[13], tonumber(ARGV[14])
local keep, bin_width, keep_bins, stop_keep = ARGV[15], tonumber(ARGV[16]), tonumber(ARGV[17]),
  tonumber(ARGV[18])

-- leases of processes that stopped renewing them (killed, or lost their link)
local dead = redis.call('ZRANGEBYSCORE', L, '-inf', f(now))
for _, p in ipairs(dead) do redis.call('HDEL', P, p) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', L, '-inf', f(now)) end
if ARGV[19] == '1' then
  redis.call('ZREM', L, pid)
  redis.call('HDEL', P, pid)
  return {}
end

-- the adaptive-concurrency controller, one for every process of the key
local c = redis.call('HMGET', H, 'limit', 'credit', 'slow', 'hold')
local limit, credit = tonumber(c[1]) or start, tonumber(c[2]) or 0
local slow, hold = tonumber(c[3]) or 1, tonumber(c[4]) or 0
if fixed > 0 then
  limit = fixed
else
  if slow == 1 then
    limit = math.min(maximum, limit + grown)
  else
    credit = credit + grown
    while credit >= limit and limit < maximum do
      credit = credit - limit
      limit = limit + 1
    end
  end
  if cuts > 0 and now >= hold then
    slow, credit, hold = 0, 0, now + cooldown
    limit = math.max(1, math.floor(limit * 0.5))
  end
end
redis.call('HSET', H, 'limit', limit, 'credit', credit, 'slow', slow, 'hold', f(hold),
  'label', ARGV[20])

-- this process's lease: its share of the limit, more while others want less
local holders = redis.call('HGETALL', P)
local n, leader, reserve, others = 1, pid, 0, 0
for i = 1, #holders, 2 do
  if holders[i] ~= pid then
    n = n + 1
    if holders[i] < leader then leader = holders[i] end
  end
end
local fair = math.ceil(limit / n)
for i = 1, #holders, 2 do
  if holders[i] ~= pid then
    local held, want = string.match(holders[i + 1], '([^,]+),([^,]+)')
    held, want = tonumber(held), tonumber(want)
    others = others + held
    reserve = reserve + math.max(held, math.min(want, fair))
  end
end
local grant = math.min(wanted, math.max(0, limit - reserve))
redis.call('HSET', P, pid, math.max(grant, in_flight) .. ',' .. wanted)
redis.call('ZADD', L, f(now + ttl), pid)

-- learned limits: last writer wins, the version tells readers something changed
if record ~= '' then
  redis.call('HSET', H, 'limits', record)
  redis.call('HINCRBY', H, 'version', 1)
end
-- the streak of identical fatal errors (a hash of the error, never its text)
if stop == 'reset' then
  redis.call('HDEL', H, 'stop_sig', 'stop_count', 'stop_at')
elseif stop ~= '' then
  local op, sig, n = string.match(stop, '(%a+),([^,]+),(%d+)')
  if op == 'inc' and redis.call('HGET', H, 'stop_sig') == sig then
    redis.call('HINCRBY', H, 'stop_count', n)
  else
    redis.call('HSET', H, 'stop_sig', sig, 'stop_count', n)
  end
  redis.call('HSET', H, 'stop_at', f(now))
end

-- successful sends per time bin, for keys that infer their rate from 429s
for bin, count in string.gmatch(outbox, '(%d+):(%d+)') do
  redis.call('HINCRBY', S, bin .. '|' .. pid, count)
end
local heard = {}
if since >= 0 or outbox ~= '' then
  local bins = redis.call('HGETALL', S)
  local oldest = math.floor(now / bin_width) - keep_bins
  for i = 1, #bins, 2 do
    local bin, p = string.match(bins[i], '(%d+)|(.+)')
    bin = tonumber(bin)
    if bin < oldest then
      redis.call('HDEL', S, bins[i])
    elseif since >= 0 and p ~= pid and bin >= since then
      heard[#heard + 1] = bins[i]
      heard[#heard + 1] = bins[i + 1]
    end
  end
end
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, keep) end

local s = redis.call('HMGET', H, 'pause', 'version', 'limits', 'stop_sig', 'stop_count', 'stop_at')
local stop_sig, stop_count = '', 0
if s[4] and now - (tonumber(s[6]) or 0) <= stop_keep then
  stop_sig, stop_count = s[4], tonumber(s[5]) or 0
end
-- whether the process that wrote the limits last still holds a lease (it probes)
local owner = s[3] and string.match(s[3], '[^,]*,[^,]*,[^,]*,[^,]*,(.+)')
local owner_alive = owner and redis.call('HEXISTS', P, owner) or 0
return {grant, limit, slow, n, leader == pid and 1 or 0, others, s[1] or '0', s[2] or '0',
  s[3] or '', stop_sig, stop_count, f(now), heard, owner_alive}
"""
)

ROOM = (
    _COMMON
    + """
local W, H = KEYS[1], KEYS[2]
local span, limit, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local asked, news, hold = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function size(member) return tonumber(string.match(member, '|(%d+)$')) end
local total = tonumber(redis.call('HGET', H, 'room')) or 0
local cutoff = now - span
local gone = redis.call('ZRANGEBYSCORE', W, '-inf', f(cutoff))
for _, m in ipairs(gone) do total = total - size(m) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', W, '-inf', f(cutoff)) end
-- news: old member (or ''), new member (or '': dropped), when the new one went
local i = 7 + asked
for _ = 1, news do
  local old, new, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if old ~= '' and redis.call('ZREM', W, old) == 1 then total = total - size(old) end
  if new ~= '' and at > cutoff then
    redis.call('ZADD', W, f(at), new)
    total = total + size(new)
  end
end
if redis.call('ZCARD', W) == 0 then total = 0 end
local admitted, wait = 0, 0
for k = 1, asked do
  local m = ARGV[6 + k]
  local excess = total + size(m) - limit
  -- an empty window always has room, even for a send larger than the limit
  if excess > 0 and total > 0 then
    local entries = redis.call('ZRANGE', W, 0, -1, 'WITHSCORES')
    local freed = 0
    wait = tonumber(entries[#entries]) + span - now
    for j = 1, #entries, 2 do
      freed = freed + size(entries[j])
      if freed >= excess then
        wait = tonumber(entries[j + 1]) + span - now
        break
      end
    end
    break
  end
  redis.call('ZADD', W, f(now), m)
  total = total + size(m)
  admitted = k
end
local held = 0
if hold ~= '' and admitted == asked and total + size(hold) <= limit / 2 then
  redis.call('ZADD', W, f(now), hold)
  total = total + size(hold)
  held = 1
end
redis.call('HSET', H, 'room', total)
redis.call('PEXPIRE', W, keep)
redis.call('PEXPIRE', H, keep)
return {admitted, f(math.max(0, wait)), f(now), redis.call('HGET', H, 'pause') or '0', held}
"""
)

SCRIPTS = {"take": TAKE, "pause": PAUSE, "sync": SYNC, "room": ROOM}
