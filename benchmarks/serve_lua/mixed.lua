-- wrk script: 90% GET /users/{random known user}/recommendations?k=10, 10% event POSTs with unique ids
local key = os.getenv("RECSTACK_API_KEY") or ""
local n_users = tonumber(os.getenv("BENCH_USERS") or "943")
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
end

function request()
  local user = math.random(1, n_users)
  if math.random() < 0.9 then
    return wrk.format("GET", "/users/" .. user .. "/recommendations?k=10")
  end
  counter = counter + 1
  local body = string.format('{"events":[{"event_id":"wrk-%d-%d-%d","item":"%d","type":"click"}]}',
    tid or 0, os.time(), counter, math.random(1, 1682))
  return wrk.format("POST", "/users/" .. user .. "/events",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

local errors = 0
function response(status, headers, body)
  if status >= 300 then errors = errors + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %.3f, \"rps\": %.1f, \"p50_ms\": %.3f, " ..
    "\"p99_ms\": %.3f, \"mean_ms\": %.3f, \"socket_errors\": %d, \"non_2xx\": %d}\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
