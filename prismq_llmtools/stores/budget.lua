-- Budgets of one scope, atomically: the same math as prismq_llmtools/budget_ledger.py.
--
-- KEYS[1]  hash of line states: <line>:p period, <line>:s spent, <line>:m thresholds
--          passed; rolling lines keep <line>@<slot> -> spent
-- KEYS[2]  hash of open reservations: id -> "expires;line,amount,period;..."
-- ARGV     op, now ('' = this server's TIME), n, then n x (name, unit, period, limit,
--          window_s, thresholds joined by ','), then the operation's own arguments.

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
local lines = {}
local a = 4
for i = 1, n do
  local thresholds = {}
  for part in string.gmatch(ARGV[a + 5], '[^,]+') do
    thresholds[#thresholds + 1] = tonumber(part)
  end
  lines[i] = {
    name = ARGV[a], unit = ARGV[a + 1], period = ARGV[a + 2], limit = tonumber(ARGV[a + 3]),
    window = tonumber(ARGV[a + 4]), thresholds = thresholds,
  }
  a = a + 6
end

local function civil_month(ts) -- months since 1970-01 of a UTC timestamp (H. Hinnant's algorithm)
  local z = math.floor(ts / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then
    y = y + 1
  end
  return (y - 1970) * 12 + m - 1
end

local function period_of(line, ts)
  if line.period == 'hour' then return math.floor(ts / 3600) end
  if line.period == 'day' then return math.floor(ts / 86400) end
  if line.period == 'month' then return civil_month(ts) end
  return math.floor(ts / (line.window / 60))
end

-- State that cannot be read is an error, never an empty state (which would reset the
-- budget). Everything is read and checked before the first write.
local function corrupt(key, field, value)
  return redis.error_reply('corrupt budget state: ' .. key .. ' field ' .. field .. ' = '
    .. string.sub(tostring(value), 1, 60))
end

local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do
  local value = tonumber(raw[i + 1])
  if value == nil or value ~= value or value == math.huge or value == -math.huge then
    return corrupt(KEYS[1], raw[i], raw[i + 1])
  end
  h[raw[i]] = value
end
for i = 1, n do -- a calendar line's spending without its period is not a state either
  local name = lines[i].name
  if lines[i].period ~= 'rolling' and (h[name .. ':s'] ~= nil or h[name .. ':m'] ~= nil)
      and h[name .. ':p'] == nil then
    return corrupt(KEYS[1], name .. ':p', 'missing')
  end
end
local reservations = {}
local raw_r = redis.call('HGETALL', KEYS[2])
for i = 1, #raw_r, 2 do
  local parts = {}
  for part in string.gmatch(raw_r[i + 1], '[^;]+') do
    parts[#parts + 1] = part
  end
  local held = {}
  for j = 2, #parts do
    local name, amount, period = string.match(parts[j], '^([^,]+),([^,]+),([^,]+)$')
    if name == nil or tonumber(amount) == nil or tonumber(period) == nil then
      return corrupt(KEYS[2], raw_r[i], raw_r[i + 1])
    end
    held[name] = { tonumber(amount), tonumber(period) }
  end
  if tonumber(parts[1]) == nil then
    return corrupt(KEYS[2], raw_r[i], raw_r[i + 1])
  end
  reservations[raw_r[i]] = { e = tonumber(parts[1]), a = held }
end

local function state(line) -- reset a finished calendar period, forget slots out of the window
  if line.period == 'rolling' then
    h[line.name .. ':m'] = h[line.name .. ':m'] or 0
    local oldest = math.floor((now - line.window) / (line.window / 60))
    local prefix = line.name .. '@'
    for field, _ in pairs(h) do
      if string.sub(field, 1, #prefix) == prefix and tonumber(string.sub(field, #prefix + 1)) < oldest then
        h[field] = nil
        redis.call('HDEL', KEYS[1], field)
      end
    end
    return
  end
  local period = period_of(line, now)
  local stored = h[line.name .. ':p']
  if stored == nil or stored < period then
    h[line.name .. ':p'] = period
    h[line.name .. ':s'] = 0
    h[line.name .. ':m'] = 0
  end
end

local function expire() -- a reservation past its TTL is charged in full (its call may be billed)
  for id, r in pairs(reservations) do
    if r.e < now then
      reservations[id] = nil
      redis.call('HDEL', KEYS[2], id)
      for i = 1, n do
        local line = lines[i]
        local held = r.a[line.name]
        if held ~= nil then
          state(line)
          if line.period == 'rolling' then
            local field = line.name .. '@' .. fmt(held[2])
            h[field] = (h[field] or 0) + held[1]
          elseif held[2] == h[line.name .. ':p'] then
            h[line.name .. ':s'] = h[line.name .. ':s'] + held[1]
          end
        end
      end
    end
  end
end

local function spent(line)
  state(line)
  if line.period == 'rolling' then
    local total = 0
    local prefix = line.name .. '@'
    for field, value in pairs(h) do
      if string.sub(field, 1, #prefix) == prefix then
        total = total + value
      end
    end
    return total
  end
  return h[line.name .. ':s']
end

local function reserved(line)
  local period = period_of(line, now)
  local total = 0
  for _, r in pairs(reservations) do
    local held = r.a[line.name]
    if held ~= nil and (line.period == 'rolling' or held[2] == period) then
      total = total + held[1]
    end
  end
  return total
end

local function save()
  local fields = {}
  for field, value in pairs(h) do
    fields[#fields + 1] = field
    fields[#fields + 1] = fmt(value)
  end
  if #fields > 0 then
    redis.call('HSET', KEYS[1], unpack(fields))
  end
end

if op == 'reserve' then
  local amounts = { tokens = tonumber(ARGV[a]), usd = tonumber(ARGV[a + 1]) }
  local id, ttl = ARGV[a + 2], tonumber(ARGV[a + 3])
  expire()
  local held = {}
  for i = 1, n do
    local line = lines[i]
    local amount = amounts[line.unit] or 0
    local used = spent(line) + reserved(line)
    if used + amount > line.limit then
      save()
      return { '0', line.name, line.unit, fmt(amount), fmt(math.max(0, line.limit - used)) }
    end
    held[#held + 1] = line.name .. ',' .. fmt(amount) .. ',' .. fmt(period_of(line, now))
  end
  redis.call('HSET', KEYS[2], id, fmt(now + ttl) .. ';' .. table.concat(held, ';'))
  save()
  return { '1' }
end

if op == 'settle' then
  local id = ARGV[a]
  local actual = { tokens = tonumber(ARGV[a + 1]), usd = tonumber(ARGV[a + 2]) }
  local held = {}
  if reservations[id] ~= nil then
    held = reservations[id].a
    reservations[id] = nil
    redis.call('HDEL', KEYS[2], id)
  end
  local out = {}
  for i = 1, n do
    local line = lines[i]
    local amount = actual[line.unit] or 0
    local period = held[line.name] and held[line.name][2] or period_of(line, now)
    state(line)
    if line.period == 'rolling' then
      local field = line.name .. '@' .. fmt(period)
      h[field] = (h[field] or 0) + amount
    elseif period == h[line.name .. ':p'] then
      h[line.name .. ':s'] = h[line.name .. ':s'] + amount
    end
    local used = spent(line)
    local mark = 0
    for _, t in ipairs(line.thresholds) do
      if used >= t * line.limit then
        mark = mark + 1
      end
    end
    for k = h[line.name .. ':m'] + 1, mark do
      out[#out + 1] = line.name
      out[#out + 1] = line.unit
      out[#out + 1] = fmt(line.thresholds[k])
      out[#out + 1] = fmt(used)
      out[#out + 1] = fmt(line.limit)
    end
    h[line.name .. ':m'] = mark
  end
  save()
  return out
end

if op == 'status' then
  expire()
  local out = {}
  for i = 1, n do
    local line = lines[i]
    out[#out + 1] = fmt(spent(line))
    out[#out + 1] = fmt(reserved(line))
  end
  save()
  return out
end

return redis.error_reply('unknown operation ' .. tostring(op))
