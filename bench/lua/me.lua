-- `me { id phone inviteCode }` with a valid access token.
-- Usage: wrk -t1 -c64 -d10s --latency -s bench/lua/me.lua http://127.0.0.1:PORT/graphql -- TOKEN
-- (the baseline servers get the same request; they ignore the header).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local report = require "report"

report.bearer_post('{"query":"{ me { id phone inviteCode } }"}')
init = report.init_bearer

setup = report.setup

function done(summary, latency, requests)
   report.done(summary, latency)
end
