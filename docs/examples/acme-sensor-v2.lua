-- ACME-SENSOR v2 events (docs/decoders.md), parsed by a Vector `lua` transform
-- (version 2, hooks.process = "process") or by Sluice's `lua` decoder, unchanged.
-- All numbers are big-endian. A payload that does not fit raises an error: no event.
local unpack, sub, find, match = string.unpack, string.sub, string.find, string.match

local TYPES = { "readings", "alarm", "heartbeat" }
local SEVERITIES = { "info", "warning", "critical" }
local STATUSES = { [0] = "ok", "low", "high", "fault" }

-- The name of a number, or the number as text.
local function name(names, n)
  return names[n] or tostring(n)
end

-- ASCII text of a NUL-padded field: up to the first NUL, spaces trimmed.
local function ascii(field)
  local nul = find(field, "\0", 1, true)
  if nul then
    field = sub(field, 1, nul - 1)
  end
  field = match(field, "^ *(.-) *$")
  if find(field, "[\128-\255]") then
    error("message: not ASCII", 0)
  end
  return field
end

local function check_end(msg, size)
  if #msg > size then
    error(#msg - size .. " bytes after the end of the event", 0)
  end
end

function process(event, emit)
  local log = event.log
  local msg = log.message
  log.message = nil -- the payload; `message` is the alarm text below
  if #msg < 18 then
    error("truncated: " .. #msg .. " bytes, the header has 18", 0)
  end
  local version, kind, device, seq, time, flags = unpack(">BBc6I4I4B", msg)
  log.version = version
  log.type = name(TYPES, kind)
  log.device = device
  log.seq = seq
  log.time = time
  log.on_battery = flags & 0x80 ~= 0
  log.tampered = flags & 0x40 ~= 0
  log.slot = flags & 0x0f

  if kind == 1 then
    local count = unpack("B", msg, 19)
    if count > 64 then
      error(count .. " readings, more than 64", 0)
    end
    local size = 20 + 8 * count
    if #msg < size then
      error("truncated: " .. #msg .. " bytes, " .. count .. " readings need " .. size, 0)
    end
    check_end(msg, size)
    for i = 0, count - 1 do
      local channel, state, value = unpack(">BBi4", msg, 21 + 8 * i)
      log.reading = i
      log.channel = channel
      log.status = name(STATUSES, state & 0x07)
      log.calibrated = state & 0x80 ~= 0
      log.value = value
      emit(event)
    end
    return
  elseif kind == 2 then
    local code, severity, text = unpack(">I2Bc16", msg, 19)
    check_end(msg, 37)
    log.code = code
    log.severity = name(SEVERITIES, severity)
    log.message = ascii(text)
  elseif kind == 3 then
    local battery, uptime = unpack(">I2I4", msg, 19)
    check_end(msg, 24)
    log.battery_mv = battery
    log.uptime = uptime
  end
  emit(event)
end
