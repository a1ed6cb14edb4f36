"""The Lua scripts behind `RedisCache`: each write or checked read is one atomic script.

The key layout and record format are described in `ragserve.cache.redis`. Scripts name the keys
they are given in KEYS (so a cluster routes them); the others they touch (members of a tag set,
the tags of an overwritten record) share the same `{prefix}` hash tag, hence the same slot.
"""

from __future__ import annotations

# Shared by the scripts. ARGV[1] is always the key base `{prefix}`.
_COMMON = """
local base = ARGV[1]
local idx = base .. 'n'
local function vkey(k) return base .. 'v:' .. k end
local function tkey(t) return base .. 't:' .. t end
local function gkey(t) return base .. 'g:' .. t end
local function userkey(vk) return string.sub(vk, #base + 3) end

-- The record's header line, undecoded; nil when there is no record.
local function header(vk)
  local head = redis.call('GETRANGE', vk, 0, 1023)
  if head == '' then return nil end
  local nl = string.find(head, '\\n', 1, true)
  if not nl then
    head = redis.call('GET', vk)
    nl = string.find(head, '\\n', 1, true)
  end
  return string.sub(head, 1, nl - 1)
end

-- True while no tag of the entry has been invalidated since it was written.
local function current(h)
  local tags, gens = h[2], h[3]
  if tags then
    for i, t in ipairs(tags) do
      if redis.call('GET', gkey(t)) ~= gens[i] then return false end
    end
  end
  return true
end

local function unlink(k, h)
  if h[2] then
    for _, t in ipairs(h[2]) do redis.call('SREM', tkey(t), k) end
  end
  redis.call('DEL', vkey(k))
  redis.call('ZREM', idx, k)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: records. ARGV[1 + i]: the header the caller holds for KEYS[i], or ''.
# Per key: 1 when the caller's copy is still current, else the record and its PTTL, or nil.
FETCH = (
    _COMMON
    + """
local out = {}
for i, vk in ipairs(KEYS) do
  local result, ttl = false, false
  local known = ARGV[i + 1]
  if known ~= '' and redis.call('GETRANGE', vk, 0, #known) == known .. '\\n' and current(cjson.decode(known)) then
    result = 1
  else
    local rec = redis.call('GET', vk)
    if rec then
      local h = cjson.decode(string.sub(rec, 1, string.find(rec, '\\n', 1, true) - 1))
      if current(h) then
        result, ttl = rec, redis.call('PTTL', vk)
      else
        unlink(userkey(vk), h)
      end
    end
  end
  out[2 * i - 1], out[2 * i] = result, ttl
end
return out
"""
)

# KEYS[1]: the record, KEYS[2..]: its tag sets, then their generations.
# ARGV: base, ttl ms (0: none), stamp, generation seed, value, tags... Returns the new header.
SET = (
    _COMMON
    + """
local vk = KEYS[1]
local key = userkey(vk)
local ttl = tonumber(ARGV[2])
local old = header(vk)
if old then
  local h = cjson.decode(old)
  if h[2] then
    for _, t in ipairs(h[2]) do redis.call('SREM', tkey(t), key) end
  end
end
local tags, gens = {}, {}
for i = 6, #ARGV do
  local g = gkey(ARGV[i])
  redis.call('SET', g, ARGV[4], 'NX')
  tags[#tags + 1] = ARGV[i]
  gens[#gens + 1] = redis.call('GET', g)
end
local head
if #tags == 0 then head = cjson.encode({ARGV[3]}) else head = cjson.encode({ARGV[3], tags, gens}) end
if ttl > 0 then
  redis.call('SET', vk, head .. '\\n' .. ARGV[5], 'PX', ttl)
else
  redis.call('SET', vk, head .. '\\n' .. ARGV[5])
end
for _, t in ipairs(tags) do
  local tk = tkey(t)
  local existed = redis.call('EXISTS', tk)
  redis.call('SADD', tk, key)
  if ttl == 0 then
    redis.call('PERSIST', tk)
  elseif existed == 0 then
    redis.call('PEXPIRE', tk, ttl)
  else
    redis.call('PEXPIRE', tk, ttl, 'GT')
  end
  -- Members that expired stay in the set until it expires; a couple of samples per write keep a hot tag lean.
  for _, m in ipairs(redis.call('SRANDMEMBER', tk, 2)) do
    if m ~= key and redis.call('EXISTS', vkey(m)) == 0 then redis.call('SREM', tk, m) end
  end
end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', idx, '-inf', string.format('%.0f', now))
if ttl > 0 then
  redis.call('ZADD', idx, string.format('%.0f', now + ttl), key)
else
  redis.call('ZADD', idx, '+inf', key)
end
return head
"""
)

# KEYS: records. Returns how many existed.
DELETE = (
    _COMMON
    + """
local removed = 0
for _, vk in ipairs(KEYS) do
  local head = header(vk)
  if head then
    unlink(userkey(vk), cjson.decode(head))
    removed = removed + 1
  end
end
return removed
"""
)

# KEYS: tag sets and generations. ARGV: base, generation seed, tags... Returns the entries removed.
INVALIDATE = (
    _COMMON
    + """
local removed = 0
for i = 3, #ARGV do
  local tk, gk = tkey(ARGV[i]), gkey(ARGV[i])
  for _, m in ipairs(redis.call('SMEMBERS', tk)) do
    local head = header(vkey(m))
    if head then
      unlink(m, cjson.decode(head))
      removed = removed + 1
    end
  end
  redis.call('DEL', tk)
  redis.call('SET', gk, ARGV[2], 'NX')
  redis.call('INCR', gk)
end
return removed
"""
)

# KEYS[1]: the index. Returns the live entry count.
COUNT = (
    _COMMON
    + """
redis.call('ZREMRANGEBYSCORE', idx, '-inf', string.format('%.0f', now_ms()))
return redis.call('ZCARD', idx)
"""
)
