--[[
streamer: ship every KumoMTA log record to Kafka, streamer's input topic.

In init.lua, at the top level (before the queue helper, as KumoMTA asks of log hooks):

  package.path = '/opt/streamer/kumomta/?.lua;' .. package.path
  require('streamer_logs').setup {
    bootstrap = 'kafka1:9092,kafka2:9092',
    topic = 'kumomta.logs',            -- streamer's input_topic
  }

How: KumoMTA's own `policy-extras.log_hooks` puts each log record in a queue of its own,
`<name>.log_hook` (default `streamer.log_hook`), that delivers through a `custom_lua`
constructor: each of the queue's connections builds one `kumo.kafka.build_producer` and
sends one record per call, keyed by the message id (`id`), so the records of one message
go to one partition in the order they are sent. A record without a message id (a
Rejection of RCPT TO has id "") is sent without a key.

Failures: a send that Kafka does not acknowledge within `send_timeout` raises a Lua error:
a transient failure, and KumoMTA retries the record later (`retry_interval`, doubling up
to `max_retry_interval`) until the queue's `max_age`, like any queued message. A record
retried may arrive after later records of its message: streamer decides suppressions by
event time, so their order does not matter to it. Give the queue its own throttle config
in your shaping file (deploy/kumomta/shaping.toml).
]]
local mod = {}

local DEFAULTS = {
  name = 'streamer',
  topic = 'kumomta.logs',
  send_timeout = '1 minute',
  retry_interval = '30 seconds',
  max_retry_interval = '10 minutes',
}

-- The librdkafka settings of a producer: bootstrap plus `producer` (TLS, SASL...).
function mod.producer_config(options)
  local config = { ['bootstrap.servers'] = options.bootstrap }
  for k, v in pairs(options.producer or {}) do
    config[k] = v
  end
  return config
end

-- The Kafka record of one log-hook message: its JSON, keyed by the message id.
function mod.kafka_record(options, message)
  local record = message:get_meta 'log_record'
  local id = record and record.id
  return {
    topic = options.topic,
    payload = message:get_data(),
    key = (id ~= nil and id ~= '') and id or nil,
    timeout = options.send_timeout,
  }
end

function mod.resolve(options)
  assert(type(options) == 'table', 'streamer_logs.setup: options table required')
  assert(
    type(options.bootstrap) == 'string' and options.bootstrap ~= '',
    'streamer_logs.setup: bootstrap (Kafka bootstrap servers) required'
  )
  local resolved = {}
  for k, v in pairs(DEFAULTS) do
    resolved[k] = v
  end
  for k, v in pairs(options) do
    resolved[k] = v
  end
  return resolved
end

function mod.setup(options)
  local kumo = require 'kumo'
  local log_hooks = require 'policy-extras.log_hooks'
  local opts = mod.resolve(options)

  log_hooks:new {
    name = opts.name,
    log_parameters = opts.log_parameters,
    queue_config = {
      retry_interval = opts.retry_interval,
      max_retry_interval = opts.max_retry_interval,
    },
    constructor = function(domain, tenant, campaign)
      local producer = kumo.kafka.build_producer(mod.producer_config(opts))
      local connection = {}
      function connection:send(message)
        -- an error here (no acknowledgement within send_timeout) is transient: retried
        local partition, offset = producer:send(mod.kafka_record(opts, message))
        return string.format('250 %s partition %s offset %s', opts.topic, partition, offset)
      end
      function connection:close()
        producer:close()
      end
      return connection
    end,
  }
end

return mod
