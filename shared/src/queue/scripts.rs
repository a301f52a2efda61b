//! The Lua scripts behind every state change.
//!
//! Each transition of a job (enqueue, claim, lease refresh, progress, finish, retry, cancel, release) is
//! one script, so Redis applies it atomically: there is no moment where an entry is acknowledged but its
//! job has no terminal state, or a job is counted against its guild but not queued. Scripts read the
//! server clock (`TIME`), so every timestamp comes from one clock however many hosts run workers.
//!
//! Scripts never spell a key: they get keys in `KEYS` and key prefixes (`{radio}:job:`) in `ARGV`, both
//! from [`crate::keys::Keys`]. Keys a job needs later (its stream, its guild's active set) are stored in
//! the job's hash when it is enqueued.

use redis::Script;

/// Helpers shared by all scripts: the server clock, events, the state history, terminal transitions.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local TERMINAL = { succeeded = true, failed = true, cancelled = true }

local function emit(events, maxlen, job, kind, guild, data)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
    'job', job, 'type', kind, 'guild', guild or '', 'data', data or '{}')
end

-- The most lines a job's history keeps: the first (how it came in) and the latest ones, so a job
-- retried or handed back over and over cannot grow its record without bound. Progress is not history:
-- it lives in the `progress` field and the events stream.
local HISTORY_LINES = 50

local function record(jk, now, state, note)
  local line = cjson.encode({ t = now, state = state, note = note or '' })
  local h = redis.call('HGET', jk, 'history')
  if h then h = h .. '\n' .. line else h = line end
  local _, breaks = string.gsub(h, '\n', '')
  if breaks >= HISTORY_LINES then
    local first_end = string.find(h, '\n', 1, true)
    local rest = string.sub(h, first_end + 1)
    for _ = 1, breaks + 1 - HISTORY_LINES do
      rest = string.sub(rest, string.find(rest, '\n', 1, true) + 1)
    end
    h = string.sub(h, 1, first_end) .. rest
  end
  redis.call('HSET', jk, 'history', h, 'updated_ms', now)
end

local function guild_of(jk)
  return redis.call('HGET', jk, 'guild') or ''
end

-- Moves a job to a terminal state: drops it from its guild's active set, starts its TTL and files it in
-- the index of finished jobs. `retention` is `<ttl s>:<most records kept>:<index key>`; past the most
-- kept (0: no cap), the oldest finished records are deleted.
local function finish(jk, job, now, state, retention, note)
  local ttl, keep, finished = string.match(retention, '^(%d+):(%d+):(.+)$')
  if not ttl then error('retention must be <ttl s>:<max>:<key>, got ' .. tostring(retention)) end
  redis.call('HSET', jk, 'state', state, 'finished_ms', now)
  redis.call('HDEL', jk, 'worker')
  local active = redis.call('HGET', jk, 'active_key')
  if active then redis.call('SREM', active, job) end
  record(jk, now, state, note)
  redis.call('EXPIRE', jk, ttl)
  -- Filed by the server clock in microseconds, so jobs finished within one millisecond keep their order.
  local t = redis.call('TIME')
  local stamp = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('ZADD', finished, stamp, job)
  redis.call('ZREMRANGEBYSCORE', finished, '-inf', stamp - tonumber(ttl) * 1000000)
  keep = tonumber(keep)
  if keep > 0 then
    local excess = redis.call('ZCARD', finished) - keep
    if excess > 0 then
      local prefix = string.sub(jk, 1, #jk - #job)
      -- One candidate more than needed: the job finishing now may tie on the millisecond with older
      -- ones and sort first; it is never the one dropped.
      for _, old in ipairs(redis.call('ZRANGE', finished, 0, excess)) do
        if excess == 0 then break end
        if old ~= job then
          redis.call('ZREM', finished, old)
          excess = excess - 1
          -- A record retried since it was filed is running again: it is filed anew when it ends.
          local ok = prefix .. old
          if TERMINAL[redis.call('HGET', ok, 'state') or ''] then redis.call('DEL', ok) end
        end
      end
    end
  end
end

-- Fails a job for good: its error, a dead letter (replayable with radioctl retry), the end, an event.
local function bury(jk, job, stream, entry, now, why, retention, dead, events, maxlen)
  redis.call('XADD', dead, '*', 'job', job, 'stream', stream or '', 'entry', entry or '',
    'error', why, 'attempts', redis.call('HGET', jk, 'attempts') or '0', 'failed_ms', now)
  redis.call('HSET', jk, 'error', why)
  finish(jk, job, now, 'failed', retention, why)
  emit(events, maxlen, job, 'failed', guild_of(jk), cjson.encode({ error = why, dead = true }))
end

-- The field of the entries hash for `entry` of `stream`: entry ids are unique within a stream only
-- (two streams can both have 1700000000000-0), so the stream's key is part of the field.
local function entry_field(stream, entry)
  return stream .. ' ' .. entry
end

-- Acknowledges the entry of a finished attempt. Returns the reply to give instead of recording the
-- attempt's outcome when the job is gone, already finished, or was cancelled meanwhile (it ends cancelled).
local function acknowledge(stream, group, entry, entries, jk, job, now, retention, events, maxlen, cancel_note)
  redis.call('XACK', stream, group, entry)
  -- (and the bare id, the field's form before it carried the stream's key)
  redis.call('HDEL', entries, entry_field(stream, entry), entry)
  local st = redis.call('HGET', jk, 'state')
  if not st then return { 'gone' } end
  if TERMINAL[st] then return { 'duplicate', st } end
  if redis.call('HGET', jk, 'cancel') == '1' then
    finish(jk, job, now, 'cancelled', retention, cancel_note)
    emit(events, maxlen, job, 'cancelled', guild_of(jk), cjson.encode({ note = cancel_note }))
    return { 'cancelled' }
  end
  return nil
end

-- Adds a fresh stream entry for a job from the spec in its hash (retries, recoveries, operator retries).
local function requeue(jk, job, now, entries, events, maxlen, note)
  local stream = redis.call('HGET', jk, 'stream')
  local spec = redis.call('HGET', jk, 'spec')
  if not stream or not spec then return false end
  local entry = redis.call('XADD', stream, '*', 'job', job, 'spec', spec)
  redis.call('HSET', entries, entry_field(stream, entry), job)
  redis.call('HSET', jk, 'state', 'queued', 'entry', entry, 'queued_ms', now)
  redis.call('HDEL', jk, 'worker', 'progress', 'retry_at_ms')
  record(jk, now, 'queued', note)
  emit(events, maxlen, job, 'queued', guild_of(jk), cjson.encode({ note = note }))
  return entry
end

-- Whether `consumer` holds `entry` of `stream` in the group's pending list.
local function holds(stream, group, consumer, entry)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  return p[1] ~= nil and p[1][2] == consumer
end
"#;

/// KEYS: stream, job hash, events, entries, dedup key, guild active set.
/// ARGV: id, spec, priority, guild, max_attempts, dedup ttl s (0 = no dedup), guild cap (0 = none),
///       events maxlen, group, job prefix, claim-ahead stream (or ''), track duration ms.
/// Returns `{'ok', entry, position}`, `{'dup', existing id}` or `{'full', active count}`.
const ENQUEUE: &str = r#"
local stream, jk, events, entries, dedup, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, spec, priority, guild = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_attempts, dedup_ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local maxlen, group, job_prefix, ahead, duration = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local now = now_ms()

if dedup_ttl > 0 then
  local existing = redis.call('GET', dedup)
  if existing then return { 'dup', existing } end
end
if redis.call('EXISTS', jk) == 1 then return { 'dup', id } end

if guild ~= '' and cap > 0 then
  local n = redis.call('SCARD', active)
  if n >= cap then
    -- Drop members that finished without leaving the set (expired hashes, manual deletes).
    for _, member in ipairs(redis.call('SMEMBERS', active)) do
      local st = redis.call('HGET', job_prefix .. member, 'state')
      if not st or TERMINAL[st] then redis.call('SREM', active, member) end
    end
    n = redis.call('SCARD', active)
    if n >= cap then return { 'full', n } end
  end
end

local entry = redis.call('XADD', stream, '*', 'job', id, 'spec', spec)
redis.call('HSET', entries, entry_field(stream, entry), id)
redis.call('HSET', jk, 'spec', spec, 'state', 'queued', 'priority', priority, 'guild', guild,
  'stream', stream, 'entry', entry, 'attempts', 0, 'max_attempts', max_attempts,
  'duration_ms', duration, 'created_ms', now, 'queued_ms', now)
if guild ~= '' then
  redis.call('SADD', active, id)
  redis.call('HSET', jk, 'active_key', active)
end
if dedup_ttl > 0 then redis.call('SET', dedup, id, 'EX', dedup_ttl) end
record(jk, now, 'queued', 'enqueued')

-- Position in line: entries not yet delivered in this stream and in the streams claimed before it.
local function lag(s)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', s)
  if not ok then return 0 end
  for _, g in ipairs(groups) do
    local name, value, last = nil, nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'lag' then value = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then
      if type(value) == 'number' then return value end
      -- Lag is unknown after deletions: count up to 100 undelivered entries instead.
      return #redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 100)
    end
  end
  return 0
end
local position = lag(stream)
if ahead ~= '' then position = position + lag(ahead) end
emit(events, maxlen, id, 'queued', guild, cjson.encode({ position = position }))
return { 'ok', entry, position }
"#;

/// KEYS: delayed, events, entries, dead, then the job streams in claim order.
/// ARGV: group, consumer, min idle ms (reclaim after), job prefix, events maxlen, promote limit,
///       default max attempts, retention, longest track this consumer accepts (ms), idle ms for hand-backs.
/// Returns `{'job', stream, entry, job id, spec, attempt, max attempts, queued ms, reclaimed}`,
/// `{'malformed', stream, entry, fields json, job id or ''}` or
/// `{'empty', next due ms or -1, too-long job id, its duration ms, ...}`.
///
/// A job longer than this consumer accepts is not started: its entry is handed back at once (idle set
/// past the reclaim threshold, the attempt not counted), so a worker that accepts it takes it over.
const CLAIM: &str = r#"
local delayed, events, entries, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, min_idle, job_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen, promote, default_max, retention = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local max_duration, handback_idle = tonumber(ARGV[9]), ARGV[10]
local now = now_ms()
local too_long = {}

-- 1. Retries whose backoff is over go back into their stream.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, promote)) do
  redis.call('ZREM', delayed, id)
  local jk = job_prefix .. id
  if redis.call('HGET', jk, 'state') == 'retrying' then
    requeue(jk, id, now, entries, events, maxlen, 'backoff over')
  end
end

local function dead_letter(stream, entry, jk, job, reason)
  redis.call('XACK', stream, group, entry)
  redis.call('HDEL', entries, entry_field(stream, entry))
  bury(jk, job, stream, entry, now, reason, retention, dead, events, maxlen)
end

-- An entry id that XAUTOCLAIM reports as deleted: put its job back in line from its hash.
local function recover_deleted(stream, entry)
  -- Fields written before they carried the stream's key are bare entry ids.
  local job = redis.call('HGET', entries, entry_field(stream, entry)) or redis.call('HGET', entries, entry)
  redis.call('HDEL', entries, entry_field(stream, entry), entry)
  if not job then return end
  local jk = job_prefix .. job
  local st = redis.call('HGET', jk, 'state')
  if st and not TERMINAL[st] and redis.call('HGET', jk, 'entry') == entry then
    requeue(jk, job, now, entries, events, maxlen, 'stream entry was deleted; re-queued')
  end
end

-- Turns a delivered entry into a claim, or settles it and returns nil so the caller looks further.
local function deliver(stream, e, reclaimed)
  local entry, fields = e[1], e[2]
  local job, spec = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'job' then job = fields[i + 1] end
    if fields[i] == 'spec' then spec = fields[i + 1] end
  end
  if not job or job == '' or string.find(job, '[^%w]') then
    return { 'malformed', stream, entry, cjson.encode(fields), '' }
  end
  local jk = job_prefix .. job
  local st = redis.call('HGET', jk, 'state')
  if not st then
    -- An entry added by hand (redis-cli XADD ... job ID spec JSON): adopt it.
    if not spec then return { 'malformed', stream, entry, cjson.encode(fields), job } end
    redis.call('HSET', jk, 'spec', spec, 'state', 'queued', 'stream', stream, 'entry', entry,
      'attempts', 0, 'created_ms', now, 'queued_ms', now, 'guild', '')
    redis.call('HSET', entries, entry_field(stream, entry), job)
    record(jk, now, 'queued', 'adopted an entry added outside the queue API')
    st = 'queued'
  end
  if TERMINAL[st] or redis.call('HGET', jk, 'entry') ~= entry then
    -- Cancelled while queued, finished already, or an entry of an earlier attempt: settle and skip.
    redis.call('XACK', stream, group, entry)
    redis.call('HDEL', entries, entry_field(stream, entry))
    return nil
  end
  local duration = tonumber(redis.call('HGET', jk, 'duration_ms'))
  if not duration then
    local ok, decoded = pcall(cjson.decode, spec or redis.call('HGET', jk, 'spec') or '')
    if ok and type(decoded) == 'table' and type(decoded.song) == 'table' then
      duration = math.floor((tonumber(decoded.song.duration_s) or 0) * 1000)
      redis.call('HSET', jk, 'duration_ms', duration)
    end
  end
  if duration and duration > max_duration then
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'IDLE', handback_idle, 'JUSTID')
    if st == 'running' then redis.call('HSET', jk, 'state', 'queued') end
    table.insert(too_long, job)
    table.insert(too_long, duration)
    return nil
  end
  local attempt = redis.call('HINCRBY', jk, 'attempts', 1)
  local max = tonumber(redis.call('HGET', jk, 'max_attempts')) or default_max
  if attempt > max then
    local last = redis.call('HGET', jk, 'error') or 'the worker running it stopped heartbeating'
    dead_letter(stream, entry, jk, job, 'gave up after ' .. (attempt - 1) .. ' attempts; last error: ' .. last)
    return nil
  end
  redis.call('HSET', jk, 'state', 'running', 'worker', consumer, 'started_ms', now)
  redis.call('HDEL', jk, 'progress')
  local note = consumer
  if reclaimed then note = consumer .. ' (reclaimed)' end
  record(jk, now, 'running', note)
  emit(events, maxlen, job, 'started', guild_of(jk),
    cjson.encode({ worker = consumer, attempt = attempt, reclaimed = reclaimed }))
  return { 'job', stream, entry, job, redis.call('HGET', jk, 'spec') or spec, attempt, max,
    redis.call('HGET', jk, 'queued_ms') or now, reclaimed and 1 or 0 }
end

-- 2. Per stream, most urgent first: entries whose holder stopped heartbeating, then new entries.
for s = 5, #KEYS do
  local stream = KEYS[s]
  local cursor = '0-0'
  for _ = 1, 100 do
    local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', 1)
    cursor = r[1]
    for _, gone in ipairs(r[3] or {}) do recover_deleted(stream, gone) end
    for _, e in ipairs(r[2]) do
      if e[1] then
        local claim = deliver(stream, e, true)
        if claim then return claim end
      end
    end
    if cursor == '0-0' then break end
  end
  for _ = 1, 100 do
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, '>')
    if not r then break end
    local e = r[1][2][1]
    if not e then break end
    local claim = deliver(stream, e, false)
    if claim then return claim end
  end
end

local reply = { 'empty', -1 }
local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if next_due[2] then reply[2] = tonumber(next_due[2]) end
for _, v in ipairs(too_long) do table.insert(reply, v) end
return reply
"#;

/// KEYS: stream, job hash. ARGV: group, consumer, entry.
/// Returns `{'ok', cancel flag}` or `{'lost'}` when another consumer holds the entry now.
const REFRESH: &str = r#"
local stream, jk = KEYS[1], KEYS[2]
local group, consumer, entry = ARGV[1], ARGV[2], ARGV[3]
if not holds(stream, group, consumer, entry) then return { 'lost' } end
redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
redis.call('HSET', jk, 'heartbeat_ms', now_ms())
return { 'ok', redis.call('HGET', jk, 'cancel') or '0' }
"#;

/// KEYS: job hash, events. ARGV: job, consumer, progress json, events maxlen.
/// Returns `{'ok', cancel flag}` or `{'lost'}`.
const PROGRESS: &str = r#"
local jk, events = KEYS[1], KEYS[2]
local job, consumer, progress, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', jk, 'worker') ~= consumer then return { 'lost' } end
redis.call('HSET', jk, 'progress', progress)
emit(events, maxlen, job, 'progress', guild_of(jk), progress)
return { 'ok', redis.call('HGET', jk, 'cancel') or '0' }
"#;

/// KEYS: stream, job hash, result, events, entries, results index.
/// ARGV: group, consumer, entry, job, audio, result ttl s, retention, meta json, events maxlen.
/// Returns `{'ok'}`, `{'cancelled'}`, `{'duplicate', state}` or `{'gone'}`.
const COMPLETE: &str = r#"
local stream, jk, result, events, entries, results = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, entry, job, audio = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local result_ttl, retention, meta, maxlen = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local now = now_ms()
local early = acknowledge(stream, group, entry, entries, jk, job, now, retention, events, maxlen,
  'cancelled while running; result discarded')
if early then return early end
redis.call('SET', result, audio, 'EX', result_ttl)
-- Indexed by expiry, so the stored results are counted without a scan.
redis.call('ZADD', results, now + tonumber(result_ttl) * 1000, job)
redis.call('ZREMRANGEBYSCORE', results, '-inf', now)
redis.call('HSET', jk, 'result_bytes', string.len(audio), 'result_meta', meta,
  'progress', cjson.encode({ stage = 'encode', fraction = 1.0 }))
finish(jk, job, now, 'succeeded', retention, consumer)
emit(events, maxlen, job, 'succeeded', guild_of(jk), meta)
return { 'ok' }
"#;

/// KEYS: stream, job hash, events, entries, delayed, dead.
/// ARGV: group, consumer, entry, job, error, permanent (0/1), backoff ms, retention, events maxlen.
/// Returns `{'retrying', due ms, attempt, max}`, `{'failed', attempt}`, `{'cancelled'}`, `{'duplicate', state}` or `{'gone'}`.
const FAIL: &str = r#"
local stream, jk, events, entries, delayed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, entry, job, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local permanent, backoff, retention, maxlen = ARGV[6] == '1', tonumber(ARGV[7]), ARGV[8], ARGV[9]
local now = now_ms()
local early = acknowledge(stream, group, entry, entries, jk, job, now, retention, events, maxlen, 'cancelled while running')
if early then return early end
local attempt = tonumber(redis.call('HGET', jk, 'attempts')) or 1
local max = tonumber(redis.call('HGET', jk, 'max_attempts')) or attempt
redis.call('HSET', jk, 'error', err)
if permanent or attempt >= max then
  local why = err
  if not permanent then why = 'failed ' .. attempt .. ' of ' .. max .. ' attempts; last error: ' .. err end
  bury(jk, job, stream, entry, now, why, retention, dead, events, maxlen)
  return { 'failed', attempt }
end
local due = now + backoff
redis.call('HSET', jk, 'state', 'retrying', 'retry_at_ms', due)
redis.call('HDEL', jk, 'worker')
redis.call('ZADD', delayed, due, job)
record(jk, now, 'retrying', err)
emit(events, maxlen, job, 'retrying', guild_of(jk),
  cjson.encode({ error = err, attempt = attempt, max_attempts = max, retry_in_ms = backoff }))
return { 'retrying', due, attempt, max }
"#;

/// KEYS: stream, job hash, events, entries. ARGV: group, entry, job, retention, events maxlen, note.
/// The worker saw the cancel flag and stopped. Returns `{'cancelled'}`, `{'duplicate', state}` or `{'gone'}`.
const CANCELLED: &str = r#"
local stream, jk, events, entries = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, entry, job, retention, maxlen, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = now_ms()
local early = acknowledge(stream, group, entry, entries, jk, job, now, retention, events, maxlen, note)
if early then return early end
-- Stopped without a cancel flag (the worker gave up on it): it ends cancelled all the same.
finish(jk, job, now, 'cancelled', retention, note)
emit(events, maxlen, job, 'cancelled', guild_of(jk), cjson.encode({ note = note }))
return { 'cancelled' }
"#;

/// KEYS: stream, job hash, events. ARGV: group, consumer, entry, job, idle ms, events maxlen, note.
/// Hands a claimed job back without counting the attempt: the entry's idle time is set past the
/// reclaim threshold so the next claim by any worker takes it at once.
const RELEASE: &str = r#"
local stream, jk, events = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, entry, job, idle, maxlen, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if not holds(stream, group, consumer, entry) then return { 'lost' } end
redis.call('XCLAIM', stream, group, consumer, 0, entry, 'IDLE', idle, 'JUSTID')
local st = redis.call('HGET', jk, 'state')
if st == 'running' then
  redis.call('HINCRBY', jk, 'attempts', -1)
  redis.call('HSET', jk, 'state', 'queued')
  redis.call('HDEL', jk, 'worker', 'progress')
  record(jk, now_ms(), 'queued', note)
  emit(events, maxlen, job, 'released', guild_of(jk), cjson.encode({ worker = consumer, note = note }))
end
return { 'ok' }
"#;

/// KEYS: job hash, events, delayed. ARGV: job, retention, events maxlen, who.
/// Returns `{'cancelled'}` (it was waiting), `{'cancelling'}` (a worker will stop it),
/// `{'terminal', state}` or `{'unknown'}`.
const CANCEL: &str = r#"
local jk, events, delayed = KEYS[1], KEYS[2], KEYS[3]
local job, retention, maxlen, who = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local st = redis.call('HGET', jk, 'state')
if not st then return { 'unknown' } end
if TERMINAL[st] then return { 'terminal', st } end
redis.call('HSET', jk, 'cancel', '1', 'cancel_ms', now)
if st == 'running' then
  record(jk, now, 'running', 'cancel requested by ' .. who)
  emit(events, maxlen, job, 'cancel_requested', guild_of(jk), cjson.encode({ by = who }))
  return { 'cancelling' }
end
-- Queued or waiting for a retry: its stream entry is acknowledged when a worker reaches it.
redis.call('ZREM', delayed, job)
finish(jk, job, now, 'cancelled', retention, 'cancelled by ' .. who)
emit(events, maxlen, job, 'cancelled', guild_of(jk), cjson.encode({ by = who }))
return { 'cancelled' }
"#;

/// KEYS: job hash, events, entries, dead. ARGV: job, dead entry id (or ''), events maxlen.
/// An operator's retry of a failed job: attempts start over. Returns `{'ok', entry}`,
/// `{'not_failed', state}` or `{'unknown'}`.
const RETRY: &str = r#"
local jk, events, entries, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, dead_entry, maxlen = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', jk, 'state')
if not st then return { 'unknown' } end
if st ~= 'failed' then return { 'not_failed', st } end
local now = now_ms()
redis.call('PERSIST', jk)
redis.call('HSET', jk, 'attempts', 0)
redis.call('HDEL', jk, 'error', 'finished_ms', 'cancel', 'cancel_ms')
local active = redis.call('HGET', jk, 'active_key')
if active then redis.call('SADD', active, job) end
local entry = requeue(jk, job, now, entries, events, maxlen, 'retried by an operator')
if not entry then return { 'unknown' } end
if dead_entry ~= '' then redis.call('XDEL', dead, dead_entry) end
return { 'ok', entry }
"#;

/// KEYS: stream, dead, entries, events. ARGV: group, entry, reason, raw fields json, job (or ''),
/// job prefix, retention, events maxlen. Dead-letters an entry that could not be decoded.
const DEAD_LETTER_MALFORMED: &str = r#"
local stream, dead, entries, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, entry, reason, raw, job = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job_prefix, retention, maxlen = ARGV[6], ARGV[7], ARGV[8]
local now = now_ms()
redis.call('XACK', stream, group, entry)
redis.call('HDEL', entries, entry_field(stream, entry))
redis.call('XADD', dead, '*', 'job', job, 'stream', stream, 'entry', entry,
  'error', 'malformed entry: ' .. reason, 'raw', raw, 'failed_ms', now)
if job ~= '' then
  local jk = job_prefix .. job
  local st = redis.call('HGET', jk, 'state')
  if st and not TERMINAL[st] then
    redis.call('HSET', jk, 'error', 'malformed: ' .. reason)
    finish(jk, job, now, 'failed', retention, 'malformed: ' .. reason)
    emit(events, maxlen, job, 'failed', guild_of(jk), cjson.encode({ error = 'malformed: ' .. reason, dead = true }))
  end
end
return { 'ok' }
"#;

/// KEYS: job hash, events, entries, dead. ARGV: job, error, retention, events maxlen, group.
/// Fails a waiting job no live worker can run (too long for all of them). Returns `{'failed'}` or
/// `{'skipped', state}` when it is no longer waiting.
const FAIL_UNRUNNABLE: &str = r#"
local jk, events, entries, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, err, retention, maxlen, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local st = redis.call('HGET', jk, 'state')
if st ~= 'queued' then return { 'skipped', st or 'missing' } end
local now = now_ms()
local stream, entry = redis.call('HGET', jk, 'stream'), redis.call('HGET', jk, 'entry')
if stream and entry then
  redis.call('XACK', stream, group, entry)
  redis.call('HDEL', entries, entry_field(stream, entry))
end
bury(jk, job, stream, entry, now, err, retention, dead, events, maxlen)
return { 'failed' }
"#;

/// KEYS: stream. ARGV: group, consumer idle ms before removal.
/// Trims acknowledged entries (never a pending or undelivered one) and removes consumers that hold
/// nothing and have been idle long. Returns `{trimmed, removed consumers}`.
const MAINTAIN: &str = r#"
local stream = KEYS[1]
local group, consumer_idle = ARGV[1], tonumber(ARGV[2])
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if not ok then return { 0, 0 } end
local last = nil
for _, g in ipairs(groups) do
  local name, delivered = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  if name == group then last = delivered end
end
if not last then return { 0, 0 } end

local function id_less(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end

local minid = last
local summary = redis.call('XPENDING', stream, group)
if summary[1] > 0 and id_less(summary[2], minid) then minid = summary[2] end
local trimmed = redis.call('XTRIM', stream, 'MINID', minid)

local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local name, pending, idle = nil, nil, nil
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then idle = c[i + 1] end
  end
  if pending == 0 and idle > consumer_idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    removed = removed + 1
  end
end
return { trimmed, removed }
"#;

/// Admits one song request of a member if fewer than `limit` were admitted in the last `window_ms`
/// (a sliding window over a sorted set scored by the server clock). The request id is the member of the
/// set, so a request retried under the same id is counted once.
/// KEYS: the member's request log. ARGV: request id, limit, window ms.
/// Returns { 'ok', requests in the window } or { 'limited', ms until the oldest leaves the window }.
const ADMIT: &str = r#"
local log = KEYS[1]
local id, limit, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
if redis.call('ZSCORE', log, id) then
  return { 'ok', redis.call('ZCARD', log) }
end
local n = redis.call('ZCARD', log)
if n >= limit then
  local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  return { 'limited', math.max(1, tonumber(oldest[2]) + window - now) }
end
redis.call('ZADD', log, now, id)
redis.call('PEXPIRE', log, window)
return { 'ok', n + 1 }
"#;

/// Every script, compiled once per process (redis-rs sends `EVALSHA` and loads on a miss).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub refresh: Script,
    pub progress: Script,
    pub complete: Script,
    pub fail: Script,
    pub cancelled: Script,
    pub release: Script,
    pub cancel: Script,
    pub retry: Script,
    pub dead_letter_malformed: Script,
    pub fail_unrunnable: Script,
    pub maintain: Script,
    pub admit: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            enqueue: with_prelude(ENQUEUE),
            claim: with_prelude(CLAIM),
            refresh: with_prelude(REFRESH),
            progress: with_prelude(PROGRESS),
            complete: with_prelude(COMPLETE),
            fail: with_prelude(FAIL),
            cancelled: with_prelude(CANCELLED),
            release: with_prelude(RELEASE),
            cancel: with_prelude(CANCEL),
            retry: with_prelude(RETRY),
            dead_letter_malformed: with_prelude(DEAD_LETTER_MALFORMED),
            fail_unrunnable: with_prelude(FAIL_UNRUNNABLE),
            maintain: with_prelude(MAINTAIN),
            admit: with_prelude(ADMIT),
        }
    }
}
