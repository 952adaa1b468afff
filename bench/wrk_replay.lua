-- wrk script for bench/serving.py: replay requests from a file, optionally at a fixed rate, and print a JSON
-- summary line (latency percentiles, errors, status counts) for the Python side to parse.
--
--   BENCH_API_KEY=... wrk -t1 -c64 -d30s --latency -s bench/wrk_replay.lua http://127.0.0.1:PORT -- FILE RATE
--
-- FILE has one request per line, "<path>\t<json body>" (a POST; an empty body: a GET), replayed in file order
-- (wrapping around at the end).
-- RATE is the total requests per second to offer (0: as fast as the connections allow, a closed loop).
-- The API key comes from the environment so that it is not in the process list.
--
-- Fixed rate: Debian's wrk is wrk 4 (no -R), so the script hands out send slots of a global schedule through
-- wrk's delay() hook: every connection that is ready to send takes the next slot and waits for it. With enough
-- connections this is an open-loop load; when the server falls behind, all connections are busy, the slots
-- fall behind too ("late_sends") and the achieved rate drops below the offered one, which is what serving.py checks.
-- Latency is measured by wrk from the moment a request is written.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } wrk_replay_timespec;
int clock_gettime(int clk_id, wrk_replay_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("wrk_replay_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local LATE_MS = 10 -- a send this much behind its slot means no connection was free in time

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  local rate = tonumber(args[2] or "0") or 0
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["X-API-Key"] = os.getenv("BENCH_API_KEY") or "",
  }
  requests = {}
  for line in io.lines(file) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path and body == "" then
      table.insert(requests, wrk.format("GET", path, headers))
    elseif path then
      table.insert(requests, wrk.format("POST", path, headers, body))
    end
  end
  if #requests == 0 then
    error("no requests in " .. tostring(file))
  end
  index = 0
  wraps = 0
  late_sends = 0
  status_2xx = 0
  status_4xx = 0
  status_5xx = 0
  status_other = 0
  -- One wrk thread is assumed (-t1) so that the replay keeps the file's order; the rate is per thread.
  interval = rate > 0 and 1000 / rate or 0
  next_slot = nil
end

function delay()
  if interval == 0 then
    return 0
  end
  local now = now_ms()
  if next_slot == nil then
    next_slot = now
  end
  local slot = next_slot
  next_slot = slot + interval
  if slot <= now then
    if now - slot > LATE_MS then
      late_sends = late_sends + 1
    end
    return 0
  end
  return slot - now
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wraps = wraps + 1
  end
  return requests[index]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    status_2xx = status_2xx + 1
  elseif status >= 400 and status < 500 then
    status_4xx = status_4xx + 1
  elseif status >= 500 then
    status_5xx = status_5xx + 1
  else
    status_other = status_other + 1
  end
end

function done(summary, latency, requests)
  local totals = { wraps = 0, late_sends = 0, status_2xx = 0, status_4xx = 0, status_5xx = 0, status_other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (tonumber(thread:get(name)) or 0)
    end
  end
  local parts = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"bytes": %d', summary.bytes),
    string.format(
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout
    ),
    string.format(
      '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p99_9": %d}',
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
    ),
  }
  for name, value in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', name, value))
  end
  io.write("WRK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
