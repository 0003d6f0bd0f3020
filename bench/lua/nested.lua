-- The nested scenario: a page of 100 invitees, each with the count of their own invitees.
-- Usage: wrk -t1 -c64 -d10s --latency -s bench/lua/nested.lua http://127.0.0.1:PORT/graphql -- TOKEN
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local report = require "report"

report.bearer_post('{"query":"{ me { invitedUsers(first: 100) { totalCount nodes { phone invitedUsers(first: 5) { totalCount } } } } }"}')
init = report.init_bearer

setup = report.setup

function done(summary, latency, requests)
   report.done(summary, latency)
end
