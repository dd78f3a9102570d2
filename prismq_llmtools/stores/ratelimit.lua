-- Rate-limit buckets of one key, atomically: the same math as prismq_llmtools/bucket.py.
--
-- KEYS[1]  hash: n (bucket names and limits), t<i> tat, c<i> charged, ls last start, pu pause until,
--          sh pause shift, sq admissions so far, o<i> counted (ours), l<i> the learned record
--          of prismq_llmtools/stores/accounting.py (its 13 fields, comma-separated)
-- KEYS[2]  hash: admitted, unanswered requests: id -> "expires,start,seq,cost1,cost2,..."
-- KEYS[3]  (feedback only) string: what the ticket's refunds gave back so far,
--          "refunded1,refunded2,...", kept while the ticket has not expired (absent: nothing)
-- ARGV     op, now ('' = this server's TIME), n, then n x (name, capacity, burst, rate),
--          then the operation's own arguments.
-- Numbers travel as strings written with %.17g, which round-trip doubles exactly.

local function fmt(x)
  return string.format('%.17g', x)
end

local op = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end
local n = tonumber(ARGV[3])
local names, cap, burst, rate = {}, {}, {}, {}
local a = 4
for i = 1, n do
  names[i] = ARGV[a]
  cap[i] = tonumber(ARGV[a + 1])
  burst[i] = tonumber(ARGV[a + 2])
  rate[i] = tonumber(ARGV[a + 3])
  a = a + 4
end
local parts = {}
for i = 1, n do -- names and limits, as the client wrote them: other limits start afresh
  parts[i] = ARGV[4 * i] .. '/' .. ARGV[4 * i + 1] .. '/' .. ARGV[4 * i + 2] .. '/' .. ARGV[4 * i + 3]
end
local signature = table.concat(parts, ',')

local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do
  h[raw[i]] = raw[i + 1]
end

local function forget() -- start afresh, as a new key
  h = {}
  redis.call('DEL', KEYS[1], KEYS[2])
  if KEYS[3] then
    redis.call('DEL', KEYS[3])
  end
end
if h['n'] ~= signature then -- a new key, or one declared with other buckets: start afresh
  forget()
end
-- A field that is not a number is an error, never a fresh bucket (that would reset the
-- limit). Nothing has been written yet when this is checked.
local bad
local function number(field, default)
  local text = h[field]
  if text == nil then
    return default
  end
  local value = tonumber(text)
  if value == nil then
    bad = bad or field .. ' = ' .. string.sub(text, 1, 60)
    return default
  end
  return value
end
local tats, charged, counted, last_start, pause_until, shift, seq
local function load()
  tats, charged, counted = {}, {}, {}
  for i = 1, n do
    tats[i] = number('t' .. i, -1e300)
    charged[i] = number('c' .. i, 0)
    counted[i] = number('o' .. i, 0)
  end
  last_start = number('ls', -1e300)
  pause_until = number('pu', -1e300)
  shift = number('sh', 0)
  seq = number('sq', 0)
end
load()
if bad then
  return redis.error_reply('corrupt rate-limit state: ' .. KEYS[1] .. ' field ' .. bad)
end

-- KeyState.is_sound: every time within reach of now (HORIZON_S and 2 x MAX_PAUSE_S of
-- bucket.py), every number finite. Numbers that are not (infinite, NaN, absurdly far ahead:
-- an older version stored an unbounded Retry-After) make the key start afresh: kept, they
-- would stall it for good.
local HORIZON_S, PAUSE_HORIZON_S = 31622400, 172800
local function within(x, ahead)
  return x >= -1e300 and x <= now + ahead -- false for NaN
end
local function finite(x)
  return x == x and x > -math.huge and x < math.huge
end
local function sound()
  if not (within(pause_until, PAUSE_HORIZON_S) and within(last_start, HORIZON_S)) then
    return false
  end
  if not (finite(shift) and finite(seq)) then
    return false
  end
  for i = 1, n do
    if not (within(tats[i], HORIZON_S) and finite(charged[i]) and finite(counted[i])) then
      return false
    end
  end
  return true
end
if not sound() then
  forget()
  load()
end

local function level(i)
  return cap[i] - rate[i] * math.max(0, tats[i] - math.max(now, last_start))
end

local function split(text)
  local out = {}
  for part in string.gmatch(text, '[^,]+') do
    out[#out + 1] = tonumber(part)
  end
  return out
end

-- The server's accounting, learned: the same arithmetic as accounting.py, field for field.
local RATIO_LOW, RATIO_HIGH, PER_REQUEST_BOUND = 0.25, 4.0, 0.05
local DECAY, MIN_PAIRS, SPAN, RIDGE, CLIP = 0.95, 4, 4, 0.02, 4.0
local MARGIN_FLOOR, MARGIN_RESIDUALS, MAX_PENDING = 0.005, 3.0, 64
local A, B, SOO, SON, SNN, SOS, SNS, SCALE, PAIRS, LAST_SEQ, LAST_COUNTED, LAST_T, LAST_D =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13

local function finite(x)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end

local function fresh()
  return { 1, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0 }
end

local learned = {}
for i = 1, n do
  local record = {}
  for part in string.gmatch(h['l' .. i] or '', '[^,]+') do
    record[#record + 1] = tonumber(part)
  end
  local ok = #record == 13
  for j = 1, #record do
    ok = ok and finite(record[j])
  end
  learned[i] = ok and record or fresh()
end

local function charge(i, cost)
  local r = learned[i]
  if r[PAIRS] <= 0 then
    return cost
  end
  return math.min(cap[i], math.max(r[A] * cost + r[B], cost * RATIO_LOW))
end

local function margin(i, pending, request)
  local r = learned[i]
  local configured = cap[i] - burst[i]
  if r[PAIRS] < MIN_PAIRS then
    return configured
  end
  local spread = math.sqrt(1 + math.min(MAX_PENDING, math.max(0, pending)))
  local learned_margin = 1 + MARGIN_FLOOR * cap[i] + request
    + MARGIN_RESIDUALS * r[SCALE] * spread
  return math.min(configured, learned_margin)
end

local function solve(r, capacity)
  local soo, son, snn = r[SOO], r[SON], r[SNN]
  local ridge_a, ridge_b = RIDGE * soo + 1e-9, RIDGE * snn + 1e-9
  local m00, m11 = soo + ridge_a, snn + ridge_b
  local r0, r1 = r[SOS] + ridge_a, r[SNS]
  local det = m00 * m11 - son * son
  local a, b
  if det > 1e-12 * m00 * m11 then
    a = (r0 * m11 - son * r1) / det
    b = (m00 * r1 - son * r0) / det
  else
    a, b = r0 / m00, 0
  end
  local bound = PER_REQUEST_BOUND * capacity
  if finite(a) then a = math.min(RATIO_HIGH, math.max(RATIO_LOW, a)) else a = 1 end
  if finite(b) then b = math.min(bound, math.max(-bound, b)) else b = 0 end
  return a, b
end

local function pair(r, capacity, requests, ours, theirs)
  local predicted = r[A] * ours + r[B] * requests
  local residual = theirs - predicted
  local scale = r[SCALE]
  if r[PAIRS] > 0 then
    local bound = math.max(CLIP * scale * requests, 1 + MARGIN_FLOOR * capacity)
    residual = math.min(bound, math.max(-bound, residual))
    theirs = predicted + residual
  end
  local per_request = math.abs(residual) / requests
  local u = {}
  for j = 1, 13 do
    u[j] = r[j]
  end
  if r[PAIRS] <= 0 then
    u[SCALE] = per_request
  else
    u[SCALE] = 0.9 * scale + 0.1 * per_request
  end
  u[SOO] = DECAY * r[SOO] + ours * ours
  u[SON] = DECAY * r[SON] + ours * requests
  u[SNN] = DECAY * r[SNN] + requests * requests
  u[SOS] = DECAY * r[SOS] + ours * theirs
  u[SNS] = DECAY * r[SNS] + requests * theirs
  for j = 1, 13 do
    if not finite(u[j]) then
      return -- readings too large to square: no pair
    end
  end
  u[PAIRS] = math.min(r[PAIRS] + 1, 1e9)
  u[A], u[B] = solve(u, capacity)
  for j = 1, 13 do
    r[j] = u[j]
  end
end

local function observe(r, capacity, obs_seq, obs_counted, obs_now, deficit, obs_rate, refused)
  if not (finite(obs_seq) and finite(obs_counted) and finite(obs_now) and finite(deficit)
      and finite(obs_rate) and obs_rate > 0 and deficit >= 0) then
    return
  end
  local last_seq = r[LAST_SEQ]
  if obs_seq <= last_seq then
    return
  end
  if last_seq >= 0 and obs_seq - last_seq < SPAN and not refused then
    return
  end
  local elapsed = obs_now - r[LAST_T]
  if not refused and last_seq >= 0 and elapsed >= 0 and r[LAST_D] > obs_rate * elapsed then
    pair(r, capacity, obs_seq - last_seq, obs_counted - r[LAST_COUNTED],
      deficit - r[LAST_D] + obs_rate * elapsed)
  end
  r[LAST_SEQ], r[LAST_COUNTED] = obs_seq, obs_counted
  r[LAST_T], r[LAST_D] = obs_now, deficit
end

local function live_inflight() -- drops expired records, returns the others
  local all = redis.call('HGETALL', KEYS[2])
  local live = {}
  for i = 1, #all, 2 do
    local record = split(all[i + 1])
    if record[1] < now then
      redis.call('HDEL', KEYS[2], all[i])
    else
      live[#live + 1] = record
    end
  end
  return live
end

local function save()
  local fields = {
    'n', signature, 'ls', fmt(last_start), 'pu', fmt(pause_until), 'sh', fmt(shift), 'sq', fmt(seq),
  }
  local horizon = math.max(last_start, pause_until)
  for i = 1, n do
    fields[#fields + 1] = 't' .. i
    fields[#fields + 1] = fmt(tats[i])
    fields[#fields + 1] = 'c' .. i
    fields[#fields + 1] = fmt(charged[i])
    fields[#fields + 1] = 'o' .. i
    fields[#fields + 1] = fmt(counted[i])
    local record = {}
    for j = 1, 13 do
      record[j] = fmt(learned[i][j])
    end
    fields[#fields + 1] = 'l' .. i
    fields[#fields + 1] = table.concat(record, ',')
    horizon = math.max(horizon, tats[i])
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  -- Idle keys vanish an hour after every bucket is full again (then equivalent to new).
  local ttl = math.max(1, math.ceil(horizon - now)) + 3600
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end

if op == 'admit' then
  local counts, costs = {}, {}
  for i = 1, n do
    counts[i] = tonumber(ARGV[a])
    costs[i] = charge(i, counts[i])
    a = a + 1
  end
  local ticket_id, ttl, max_wait = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local start, bucket = math.max(now, last_start), 'queue'
  if pause_until > start then
    start, bucket = pause_until, 'pause'
  end
  local pending = redis.call('HLEN', KEYS[2])
  for i = 1, n do
    local ready = tats[i] - math.max(0, cap[i] - margin(i, pending, costs[i]) - costs[i]) / rate[i]
    if ready > start then
      start, bucket = ready, names[i]
    end
  end
  if start - now > max_wait then
    return { '0', fmt(start - now), bucket }
  end
  for i = 1, n do
    tats[i] = math.max(tats[i], start) + costs[i] / rate[i]
    charged[i] = charged[i] + costs[i]
    counted[i] = counted[i] + counts[i]
  end
  last_start = start
  seq = seq + 1
  live_inflight()
  local record = { fmt(start + ttl), fmt(start), fmt(seq) }
  for i = 1, n do
    record[#record + 1] = fmt(costs[i])
  end
  redis.call('HSET', KEYS[2], ticket_id, table.concat(record, ','))
  save()
  local out = { '1', fmt(start), bucket, fmt(shift), fmt(start - now), fmt(seq) }
  for i = 1, n do
    out[#out + 1] = fmt(charged[i])
  end
  for i = 1, n do
    out[#out + 1] = fmt(costs[i])
  end
  for i = 1, n do
    out[#out + 1] = fmt(counted[i])
  end
  return out
end

if op == 'wait' then
  local start = tonumber(ARGV[a]) + (shift - tonumber(ARGV[a + 1]))
  local paused = 0
  if start > now then
    paused = pause_until - now
  end
  return fmt(math.max(0, start - now, paused))
end

if op == 'levels' then
  local out = {}
  for i = 1, n do
    out[i] = fmt(level(i))
  end
  return out
end

if op == 'feedback' then
  -- ticket id, start, shift, seq, expires, reorder_s, send window, n costs, n charged,
  -- n deficits ('' = none), n refunds, pause_s, follow_down, refused, n server limits
  -- ('' = none), n counted of the ticket (ours, cumulative)
  local ticket_id = ARGV[a]
  local ticket_start, ticket_shift = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local ticket_seq, ticket_expires = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local reorder, send_window = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  a = a + 7
  local costs, ticket_charged, deficits, refunds = {}, {}, {}, {}
  for i = 1, n do costs[i] = tonumber(ARGV[a + i - 1]) end
  a = a + n
  for i = 1, n do ticket_charged[i] = tonumber(ARGV[a + i - 1]) end
  a = a + n
  for i = 1, n do deficits[i] = tonumber(ARGV[a + i - 1]) end -- nil when ''
  a = a + n
  for i = 1, n do refunds[i] = tonumber(ARGV[a + i - 1]) end
  a = a + n
  local pause_s, down = tonumber(ARGV[a]), ARGV[a + 1] == '1'
  if not (pause_s and pause_s >= 0 and pause_s <= PAUSE_HORIZON_S / 2) then -- MAX_PAUSE_S
    return redis.error_reply('a pause must be within [0, 86400] s, got ' .. tostring(ARGV[a]))
  end
  local refused = ARGV[a + 2] == '1'
  a = a + 3
  local limits, ticket_counted = {}, {}
  for i = 1, n do limits[i] = tonumber(ARGV[a + i - 1]) end -- nil when ''
  a = a + n
  for i = 1, n do ticket_counted[i] = tonumber(ARGV[a + i - 1]) end

  local before = {}
  for i = 1, n do before[i] = level(i) end
  redis.call('HDEL', KEYS[2], ticket_id)
  local live = live_inflight()
  for i = 1, n do -- learn how the server charges (KeyState.learn)
    if limits[i] ~= nil and deficits[i] ~= nil and limits[i] > 0 then
      local period = cap[i] / rate[i]
      observe(learned[i], cap[i], ticket_seq, ticket_counted[i],
        math.min(now, ticket_start + (shift - ticket_shift)),
        deficits[i] + (limits[i] - cap[i]), limits[i] / period, refused)
    end
  end
  local started = math.min(now, ticket_start + (shift - ticket_shift) + send_window)
  for i = 1, n do
    if deficits[i] ~= nil then
      local later = charged[i] - ticket_charged[i]
      if learned[i][PAIRS] > 0 and ticket_counted[i] ~= nil then -- KeyState._later
        local relearned = learned[i][A] * (counted[i] - ticket_counted[i])
          + learned[i][B] * (seq - ticket_seq)
        later = math.max(later, relearned)
      end
      local late = 0
      for _, record in ipairs(live) do
        if record[3] < ticket_seq and record[2] >= ticket_start - reorder then
          late = late + record[3 + i]
        end
      end
      local deficit = math.min(math.max(deficits[i], 0), cap[i])
      local estimate = started + (deficit + later + late) / rate[i]
      local empty = math.max(now, last_start) + cap[i] / rate[i]
      estimate = math.min(estimate, empty)
      if down then
        tats[i] = estimate
      else
        tats[i] = math.max(tats[i], estimate)
      end
    end
  end
  local refunding = false
  for i = 1, n do
    if refunds[i] ~= nil and refunds[i] > 0 then
      refunding = true
    end
  end
  -- Past its expiry a ticket's refunds are forgotten: none is given then, or a ticket
  -- refunded before could be refunded again.
  if refunding and ticket_expires >= now then
    -- What this ticket got back so far: in total no bucket gets back more than its cost.
    local given = split(redis.call('GET', KEYS[3]) or '')
    for i = 1, n do
      given[i] = given[i] or 0
      local amount = math.min(refunds[i] or 0, costs[i] - given[i])
      if amount > 0 then
        local floor = last_start + (charged[i] - ticket_charged[i]) / rate[i]
        tats[i] = math.min(tats[i], math.max(tats[i] - amount / rate[i], floor))
        given[i] = given[i] + amount
      end
    end
    for i = 1, n do
      given[i] = fmt(given[i])
    end
    redis.call('SET', KEYS[3], table.concat(given, ','))
    -- Kept until the ticket expires, and an hour more (like the key); a ticket that never
    -- expires keeps it for good.
    local ttl = math.ceil(ticket_expires - now) + 3600
    if ttl < 1e9 then
      redis.call('EXPIRE', KEYS[3], ttl)
    end
  end
  if pause_s > 0 then
    local until_ = now + pause_s
    local paused_to = math.max(now, pause_until)
    if until_ > paused_to then
      local delta = until_ - paused_to
      shift = shift + delta
      pause_until = until_
      if last_start > now then
        last_start = last_start + delta
        for i = 1, n do
          if tats[i] > now then
            tats[i] = tats[i] + delta
          end
        end
      end
    end
  end
  save()
  local out = {}
  for i = 1, n do
    out[i] = fmt(before[i] - level(i))
  end
  return out
end

return redis.error_reply('unknown operation ' .. tostring(op))
