-- Shared by the benchmark's wrk scripts: collects the threads and, when wrk is done, prints one
-- line `BENCH_JSON {...}` that bench/run.py reads (wrk's own text report is printed too).
-- Each script loads it with `require "report"` after putting its own folder on package.path.
local M = {}

local threads = {}

-- Makes every request a JSON POST of `body`; `init` then takes the access token from the
-- script's first argument (`-- TOKEN` on wrk's command line), when there is one.
function M.bearer_post(body)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.body = body
end

function M.init_bearer(args)
   if args[1] then
      wrk.headers["Authorization"] = "Bearer " .. args[1]
   end
end

function M.setup(thread)
   table.insert(threads, thread)
end

-- `counters`: names of per-thread globals to sum over the threads (e.g. {"issued"}).
function M.done(summary, latency, counters)
   local out = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
         summary.errors.connect, summary.errors.read, summary.errors.write,
         summary.errors.status, summary.errors.timeout),
      string.format('"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}',
         latency.mean, latency:percentile(50), latency:percentile(90),
         latency:percentile(99), latency.max),
   }
   for _, name in ipairs(counters or {}) do
      local total = 0
      for _, thread in ipairs(threads) do
         total = total + (tonumber(thread:get(name)) or 0)
      end
      table.insert(out, string.format('"%s":%d', name, total))
   end
   io.write("BENCH_JSON {" .. table.concat(out, ",") .. "}\n")
end

return M
