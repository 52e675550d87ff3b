--[[
streamer: refuse mail to the addresses streamer suppressed, at reception.

`streamer suppressions sync --redis URL` (or a worker with `suppressions_redis_url`)
mirrors the suppression list into Redis: key `<prefix><recipient>` (the recipient
lower-cased, no angle brackets) holds the entry's JSON while the address is suppressed
and is deleted when it is lifted. In init.lua, at the top level:

  package.path = '/opt/streamer/kumomta/?.lua;' .. package.path
  local suppressions = require('streamer_suppressions').new {
    redis = 'redis://127.0.0.1:6379/',   -- or a table for redis.open (node = {...}, ...)
    mode = 'reject',                     -- or 'log': accept, tag and log only
    on_redis_error = 'accept',           -- fail open; 'tempfail': fail closed (4xx)
  }

and call it from your own handlers of these events (KumoMTA keeps one handler per event,
the last registered, so this module registers none itself):

  kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
    suppressions:check_rcpt(recipient)
  end)
  kumo.on('http_message_generated', function(msg, auth_info)
    suppressions:check_message(msg)
    -- ... your DKIM signing etc.
  end)
  -- mode 'log' only: tag SMTP messages too
  kumo.on('smtp_server_message_received', function(msg, conn_meta)
    suppressions:check_message(msg)
  end)

- SMTP: each RCPT TO of a suppressed address is refused with a 550 saying why; the
  other recipients of the transaction go through.
- HTTP injection (/api/inject/v1): a suppressed recipient fails in the response's
  `failed_recipients`/`errors`; the others are queued.
- mode 'log': nothing is refused; the message gets the meta `streamer_suppressed` (the
  entry's reason and label) and a warning goes to the diagnostic log.
- Lookups are memoized (`kumo.memoize`, `cache_ttl`, `cache_capacity`): a busy listener
  asks Redis once per address per `cache_ttl`, so an address suppressed (or lifted) now is
  enforced within `cache_ttl`.
- Redis away (no answer within `redis_timeout`): 'accept' lets the mail in (fail open:
  mail keeps flowing, suppressions go unenforced meanwhile); 'tempfail' answers 451 4.3.0
  (fail closed: senders retry later, nothing goes to a suppressed address). Errors are not
  cached: the next recipient asks Redis again.
]]
local mod = {}

local DEFAULTS = {
  redis = 'redis://127.0.0.1:6379/',
  prefix = 'streamer:suppressed:',
  mode = 'reject',
  on_redis_error = 'accept',
  cache_ttl = '60 seconds',
  cache_capacity = 100000,
  redis_timeout = '2 seconds',
  code = 550,
  -- one name per checker (kumo.memoize shares a cache by name)
  cache_name = 'user.streamer_suppressions',
}
local MODES = { reject = true, log = true }
local ON_ERROR = { accept = true, tempfail = true }

function mod.resolve(options)
  local resolved = {}
  for k, v in pairs(DEFAULTS) do
    resolved[k] = v
  end
  for k, v in pairs(options or {}) do
    resolved[k] = v
  end
  assert(
    MODES[resolved.mode],
    "streamer_suppressions: mode must be 'reject' or 'log', not " .. tostring(resolved.mode)
  )
  assert(
    ON_ERROR[resolved.on_redis_error],
    "streamer_suppressions: on_redis_error must be 'accept' or 'tempfail', not "
      .. tostring(resolved.on_redis_error)
  )
  assert(
    resolved.code >= 500 and resolved.code < 600,
    'streamer_suppressions: code must be a 5xx'
  )
  return resolved
end

-- An address as text, without blanks or angle brackets around it.
function mod.plain(address)
  local text = tostring(address):gsub('^%s+', ''):gsub('%s+$', '')
  return (text:gsub('^<', ''):gsub('>$', ''))
end

-- The key streamer writes for an address: lower-cased, without angle brackets.
function mod.key(prefix, address)
  return prefix .. mod.plain(address):lower()
end

-- The parameters of redis.open: a URL, or a table of them, with short timeouts (a lookup
-- waits for Redis inside an SMTP transaction).
function mod.redis_params(opts)
  local params = type(opts.redis) == 'table' and opts.redis or { node = opts.redis }
  local merged = {}
  for k, v in pairs(params) do
    merged[k] = v
  end
  merged.connect_timeout = merged.connect_timeout or opts.redis_timeout
  merged.wait_timeout = merged.wait_timeout or opts.redis_timeout
  merged.response_timeout = merged.response_timeout or opts.redis_timeout
  return merged
end

-- "why" of an entry, for the refusal text: its reason and label, e.g.
-- "hard-bounce InvalidRecipient". `parse` decodes JSON (kumo.serde.json_parse).
function mod.why(entry_json, parse)
  local ok, entry = pcall(parse, entry_json)
  if not ok or type(entry) ~= 'table' then
    return 'suppressed'
  end
  local reason = entry.reason or 'hard-bounce'
  if type(entry.label) == 'string' and entry.label ~= '' then
    return reason .. ' ' .. entry.label
  end
  return reason
end

function mod.refusal_text(address, why)
  return string.format(
    '5.1.1 <%s> is on the suppression list (%s); not accepted',
    mod.plain(address),
    why
  )
end

-- The decision for one address: nil (accept), or {code, text} / {tag = why}.
-- `lookup(key)` returns the entry's JSON, '' when absent; it raises when Redis is away.
function mod.decide(opts, lookup, parse, address)
  local ok, found = pcall(lookup, mod.key(opts.prefix, address))
  if not ok then
    if opts.on_redis_error == 'tempfail' then
      return { code = 451, text = '4.3.0 suppression list unavailable, try again later' }
    end
    return nil
  end
  if found == nil or found == '' then
    return nil
  end
  local why = mod.why(found, parse)
  if opts.mode == 'log' then
    return { tag = why }
  end
  return { code = opts.code, text = mod.refusal_text(address, why) }
end

local function recipients(msg)
  if msg.recipient_list then
    return msg:recipient_list()
  end
  return { msg:recipient() }
end

local Suppressions = {}
Suppressions.__index = Suppressions

-- A checker: its memoized Redis lookup is made once, at policy load.
function mod.new(options)
  local kumo = require 'kumo'
  local redis = require 'redis'
  local opts = mod.resolve(options)
  local params = mod.redis_params(opts)
  local self = setmetatable({ opts = opts, kumo = kumo }, Suppressions)
  self.lookup = kumo.memoize(function(key)
    local conn = redis.open(params)
    return conn:query('GET', key) or ''
  end, {
    name = opts.cache_name,
    ttl = opts.cache_ttl,
    capacity = opts.cache_capacity,
  })
  self.parse = kumo.serde.json_parse
  return self
end

-- Call from smtp_server_rcpt_to: refuses a suppressed recipient (mode 'reject').
function Suppressions:check_rcpt(recipient)
  if self.opts.mode ~= 'reject' then
    return
  end
  local decision = mod.decide(self.opts, self.lookup, self.parse, recipient)
  if decision and decision.code then
    self.kumo.reject(decision.code, decision.text)
  end
end

-- Call from http_message_generated (and, for mode 'log', smtp_server_message_received):
-- refuses the message of a suppressed recipient, or tags and logs it (mode 'log').
function Suppressions:check_message(msg)
  for _, address in ipairs(recipients(msg)) do
    local decision = mod.decide(self.opts, self.lookup, self.parse, address)
    if decision and decision.code then
      self.kumo.reject(decision.code, decision.text)
    elseif decision and decision.tag then
      msg:set_meta('streamer_suppressed', decision.tag)
      self.kumo.log_warn(
        string.format(
          'streamer: %s is suppressed (%s); accepted (mode log)',
          tostring(address),
          decision.tag
        )
      )
    end
  end
end

return mod
