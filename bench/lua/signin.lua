-- Sign-in for fresh phones: requestCode, then verifyCode with the devCode from its answer
-- (the server must run with OTP_EXPOSE=true). Answers to requestCode queue (phone, code) pairs;
-- whichever connection asks for a request next sends a pending verify first, else a requestCode
-- for the next fresh phone. Every HTTP request is one of the two mutations.
--
-- Usage: wrk -t1 -c64 -d10s --latency -s bench/lua/signin.lua http://127.0.0.1:PORT/graphql -- PREFIX
-- PREFIX (3 digits, 100-999) must differ between runs on one database: phones are
-- +79<PREFIX><6-digit counter>, so a run never meets a phone an earlier run used.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local report = require "report"

local headers = { ["Content-Type"] = "application/json" }
local prefix = "100"
local counter = 0
local queue, head, tail = {}, 1, 0

-- Per-thread counters, summed in done().
issued, signed_in, failed = 0, 0, 0

function init(args)
   if args[1] then
      prefix = args[1]
   end
end

local REQUEST = '{"query":"mutation($p: String!) { requestCode(phone: $p) { phone devCode } }",'
   .. '"variables":{"p":"%s"}}'
local VERIFY = '{"query":"mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) '
   .. '{ accessToken user { id } } }","variables":{"p":"%s","c":"%s"}}'

function request()
   if head <= tail then
      local item = queue[head]
      queue[head] = nil
      head = head + 1
      return wrk.format("POST", nil, headers, string.format(VERIFY, item[1], item[2]))
   end
   counter = counter + 1
   local phone = string.format("+79%s%06d", prefix, counter)
   return wrk.format("POST", nil, headers, string.format(REQUEST, phone))
end

function response(status, hdrs, body)
   -- Field order in the answer is the server's business: look for each on its own.
   local code = body:match('"devCode":"(%d+)"')
   local phone = code and body:match('"phone":"(%+%d+)"')
   if phone then
      issued = issued + 1
      tail = tail + 1
      queue[tail] = { phone, code }
   elseif body:find('"accessToken"', 1, true) then
      signed_in = signed_in + 1
   else
      failed = failed + 1
   end
end

setup = report.setup

function done(summary, latency, requests)
   report.done(summary, latency, { "issued", "signed_in", "failed" })
end
