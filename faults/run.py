#!/usr/bin/env python3
"""The fault harness: `faults/run [scenario ...]` (docs/faults.md). Python 3.11 stdlib only.

Scenarios (each bounded in time, loopback only, on a private PostgreSQL cluster it makes and
deletes; the machine's shared server is never touched):

  outage     PostgreSQL stopped for 10 s under steady sign-in load, then started again
  sigkill    one of two instances SIGKILLed mid-load; the other takes over its outbox rows
  overload   ten times more concurrent demand than the server admits; shed with 503
  rolling    three instances behind HAProxy, each restarted in turn (SIGTERM) under load
  instances  three instances behind HAProxy: limits exact, subscriptions, revocation
  sizing     memory per instance and per subscription, statements and rows per sign-in
  soak       mixed load for --soak-minutes (default 30): RSS slope, fds, connections, p99

`faults/run` alone runs every scenario but soak; `faults/run --ci` runs outage, sigkill and
overload. Results: faults/results/<scenario>.json. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import *  # noqa: E402,F403

FAST = ["outage", "sigkill", "overload"]
# `--pin`: overload pins the server to core 1 and wrk to core 0 (as bench/run does). Off by
# default: on a machine shared with other work, a pinned server competes for one core only.
SERVER_CPU = None
LOAD_CPU = None
ALL = ["outage", "sigkill", "overload", "rolling", "instances", "sizing"]


# ------------------------------------------------------------------------------------------
# Database outage
# ------------------------------------------------------------------------------------------


def scenario_outage(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("outage")
    db = "faults_outage"
    pg.createdb(db)
    gw = Gateway()
    timeout_ms = 2000
    inst = Instance("outage", args.bin, {
        "DATABASE_URL": pg.url(db), "SMS_WEBHOOK_URL": gw.url("/a"),
        "REQUEST_TIMEOUT_MS": str(timeout_ms), "DATABASE_MAX_CONNECTIONS": "10",
    }, work)
    inst.start()
    client = Client()
    me_user = sign_in(client, inst.port, fresh_phone())
    signins = SignInLoad(lambda: [inst.port], threads=6, rate=60).start()
    me_load = QueryLoad(lambda: [inst.port], me_user["accessToken"], threads=2, rate=40).start()
    ready = Poller(lambda: inst.port, "/readyz", every=0.1).start()
    time.sleep(args.warmup)
    t_down = pg.stop("fast")
    log(f"PostgreSQL stopped (fast) at {t_down:.1f}s")
    time.sleep(args.outage_seconds)
    t_started = now()
    t_up = pg.start()
    log(f"PostgreSQL started again at {t_up:.1f}s (pg_ctl start took {t_up - t_started:.1f}s)")
    time.sleep(8)
    signins.stop()
    me_load.stop()
    ready.stop()

    records = signins.records + me_load.records
    during = [r for r in records if t_down <= r["start"] <= t_up]
    worst = max((r["ms"] for r in records), default=0)
    checks.check(worst <= timeout_ms + 500,
                 f"no request waits past REQUEST_TIMEOUT_MS ({timeout_ms} ms, +500 ms slack)",
                 f"slowest {worst:.0f} ms; during the outage p99 "
                 f"{pct([r['ms'] for r in during], 99) or 0:.0f} ms over {len(during)} requests")
    transport = [r for r in records if r.get("status") == 0]
    checks.check(not transport, "every request is answered (no connection error or hang)",
                 f"{len(transport)} transport errors")
    failed = [r for r in records if r.get("code")]
    no_code = [r for r in records if r.get("status") != 200 and not r.get("code") and r.get("status")]
    internal = [r for r in failed if r.get("code") == "INTERNAL_SERVER_ERROR"]
    checks.check(not no_code and all(r.get("request_id") for r in internal),
                 "every failure is a contract error; INTERNAL_SERVER_ERROR carries its requestId",
                 f"{len(failed)} errors: " + json.dumps(
                     {c: sum(1 for r in failed if r.get("code") == c)
                      for c in sorted({r.get('code') for r in failed})}))
    checks.check(len(during) > 0 and sum(1 for r in during if r.get("code")) > 0,
                 "the outage was felt (requests failed while the database was down)",
                 f"{sum(1 for r in during if r.get('code'))} of {len(during)} failed")
    down_503 = [s for s in ready.samples if t_down + 0.5 <= s[0] <= t_up and s[1] == 503]
    down_all = [s for s in ready.samples if t_down + 0.5 <= s[0] <= t_up]
    checks.check(down_all and len(down_503) == len(down_all),
                 "/readyz answers 503 while the database is down",
                 f"{len(down_503)}/{len(down_all)} polls 503; slowest "
                 f"{max((s[2] for s in down_all), default=0):.0f} ms")
    first_ready = next((s[0] for s in ready.samples if s[0] >= t_up and s[1] == 200), None)
    first_ok = min((r["start"] + r["ms"] / 1000 for r in signins.records
                    if r["start"] >= t_up and r.get("status") == 200 and not r.get("code")
                    and r["op"] == "verifyCode"), default=None)
    recovery = None if first_ready is None else first_ready - t_up
    checks.check(recovery is not None and recovery <= 2.0,
                 "/readyz is 200 again within 2 s of the database returning",
                 "never" if recovery is None else f"{recovery * 1000:.0f} ms")
    ok_recovery = None if first_ok is None else first_ok - t_up
    checks.check(ok_recovery is not None and ok_recovery <= 2.0,
                 "sign-ins succeed again within 2 s of the database returning",
                 "never" if ok_recovery is None else f"{ok_recovery * 1000:.0f} ms")
    tokens = tokens_report(client, inst.port, signins.signed_in, checks)
    outbox = outbox_report(pg, db, gw, signins.requested, checks, settle_s=40)
    inst.stop()
    gw.close()
    return {"checks": checks, "request_timeout_ms": timeout_ms,
            "outage": {"stopped_at_s": round(t_down, 2), "started_at_s": round(t_up, 2),
                       "seconds": round(t_up - t_down, 2)},
            "requests": len(records), "requests_during_outage": len(during),
            "latency_ms_during_outage": summary([r["ms"] for r in during]),
            "latency_ms_outside": summary([r["ms"] for r in records if r not in during]),
            "readyz_recovery_ms": None if recovery is None else round(recovery * 1000),
            "signin_recovery_ms": None if ok_recovery is None else round(ok_recovery * 1000),
            "tokens": tokens, "outbox": outbox}


# ------------------------------------------------------------------------------------------
# SIGKILL of one instance of two
# ------------------------------------------------------------------------------------------


def scenario_sigkill(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("sigkill")
    db = "faults_sigkill"
    pg.createdb(db)
    # A slow gateway (1 s an SMS): each worker always has a batch in flight, so the kill
    # catches rows the dead instance had claimed.
    gw = Gateway(delay=1.0)
    send_timeout_ms = 3000
    common = {"DATABASE_URL": pg.url(db), "SMS_SEND_TIMEOUT_MS": str(send_timeout_ms)}
    a = Instance("sigkill-a", args.bin, {**common, "SMS_WEBHOOK_URL": gw.url("/a")}, work)
    b = Instance("sigkill-b", args.bin, {**common, "SMS_WEBHOOK_URL": gw.url("/b")}, work)
    a.start()
    b.start()
    live = [a.port, b.port]
    load = SignInLoad(lambda: live, threads=6, rate=80).start()
    time.sleep(args.warmup + 2)
    lease_s = send_timeout_ms / 1000 + 30
    a.sigkill()
    t_kill = now()
    t_kill_db = float(pg.psql("SELECT extract(epoch FROM clock_timestamp())", db)[0][0])
    live[:] = [b.port]
    log(f"instance a SIGKILLed at {t_kill:.1f}s")
    # Rows a claimed before it died hold leases ending by kill + lease; b's claims after the
    # kill end later. b's own earlier claims finish within its send timeout: wait that out.
    time.sleep(send_timeout_ms / 1000 + 1.0)
    orphans = pg.psql(
        "SELECT id, extract(epoch FROM locked_until) FROM sms_outbox "
        "WHERE status = 'pending' AND locked_until > now() "
        f"AND extract(epoch FROM locked_until) <= {t_kill_db + lease_s + 0.2}", db)
    orphan_ids = {row[0]: t_kill + (float(row[1]) - t_kill_db) for row in orphans}
    log(f"{len(orphan_ids)} rows still leased by the dead instance")
    time.sleep(3)
    load.stop()
    outbox = outbox_report(pg, db, gw, load.requested, checks, settle_s=lease_s + 25)
    with gw.lock:
        posts = list(gw.posts)
    taken_over = {}
    for rid, lease_end in orphan_ids.items():
        by_b = [p["t"] for p in posts if p["path"] == "/b" and p["key"].split(".")[0] == rid]
        taken_over[rid] = (min(by_b) if by_b else None, lease_end)
    picked = [rid for rid, (tb, _) in taken_over.items() if tb is not None]
    early = [rid for rid, (tb, end) in taken_over.items() if tb is not None and tb < end - 0.5]
    checks.check(len(orphan_ids) > 0, "the kill caught rows the dead instance had claimed",
                 f"{len(orphan_ids)} rows leased by it")
    checks.check(len(picked) == len(orphan_ids),
                 "the surviving instance sends every row the dead one had claimed",
                 f"{len(picked)}/{len(orphan_ids)}")
    checks.check(not early, "and only after their lease ran out (never while still leased)",
                 f"{len(early)} taken early")
    answered_by_dead = [r for r in load.records if r["port"] == a.port and r.get("status") == 200]
    tokens = tokens_report(Client(), b.port, load.signed_in, checks)
    b.stop()
    gw.close()
    transport = [r for r in load.records if r.get("status") == 0]
    return {"checks": checks, "killed_at_s": round(t_kill, 2),
            "requests": len(load.records), "answered_by_killed_instance": len(answered_by_dead),
            "cut_by_the_kill": len(transport),
            "rows_leased_by_dead_instance": len(orphan_ids), "taken_over": len(picked),
            "lease_seconds": lease_s, "tokens": tokens, "outbox": outbox}


# ------------------------------------------------------------------------------------------
# Overload
# ------------------------------------------------------------------------------------------

OVERLOAD_LUA = r"""
-- me with a token; counts statuses per thread and whether 503s carry Retry-After.
local threads = {}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"{ me { id phone inviteCode } }"}'
function setup(thread) table.insert(threads, thread) end
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  ok, shed, retry_after, other = 0, 0, 0, 0
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then
    shed = shed + 1
    if headers["Retry-After"] or headers["retry-after"] then retry_after = retry_after + 1 end
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {ok = 0, shed = 0, retry_after = 0, other = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (tonumber(th:get(k)) or 0) end
  end
  io.write(string.format(
    'FAULTS_JSON {"requests":%d,"duration_us":%d,"ok":%d,"shed":%d,"retry_after":%d,"other":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, t.ok, t.shed, t.retry_after, t.other,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(port: int, token: str, connections: int, seconds: int, threads: int, work: Path) -> dict:
    script = work / "overload.lua"
    script.write_text(OVERLOAD_LUA)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}/graphql", "--", token]
    if LOAD_CPU is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", LOAD_CPU, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("FAULTS_JSON "):
            res = json.loads(line[len("FAULTS_JSON "):])
            res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
            return res
    raise RuntimeError(f"no FAULTS_JSON from wrk:\n{out}")


def scenario_overload(args, pg: PrivatePg, work: Path) -> dict:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    checks = Checks("overload")
    db = "faults_overload"
    pg.createdb(db)
    gw = Gateway()
    pool = 10
    limit = 64
    inst = Instance("overload", args.bin, {
        "DATABASE_URL": pg.url(db), "SMS_WEBHOOK_URL": gw.url("/a"),
        "DATABASE_MAX_CONNECTIONS": str(pool), "MAX_CONCURRENT_REQUESTS": str(limit),
        "RUST_LOG": "warn",
    }, work, cpus=SERVER_CPU)
    inst.start()
    client = Client()
    user = sign_in(client, inst.port, fresh_phone())
    token = user["accessToken"]
    # What it serves: wrk at the limit's concurrency (nothing shed).
    base = run_wrk(inst.port, token, limit, args.overload_seconds, 1, work)
    log(f"capacity: {base['rps']} req/s at {limit} connections, p99 "
        f"{base['latency_us']['p99'] / 1000:.1f} ms, shed {base['shed']}")
    # Ten times the concurrency it admits, while probes measure what a client sees.
    probes = QueryLoad(lambda: [inst.port], token, threads=2).start()
    health = Poller(lambda: inst.port, "/healthz", every=0.05).start()
    metrics = Poller(lambda: inst.port, "/metrics", every=0.2).start()
    over = run_wrk(inst.port, token, 10 * limit, args.overload_seconds, 1, work)
    probes.stop()
    health.stop()
    metrics.stop()
    log(f"overload: {over['rps']} answers/s at {10 * limit} connections: ok {over['ok']}, "
        f"shed {over['shed']}, other {over['other']}")
    accepted = [r["ms"] for r in probes.records if r.get("status") == 200 and not r.get("code")]
    shed = [r for r in probes.records if r.get("status") == 503]
    other = [r for r in probes.records if r.get("status") not in (200, 503)]
    checks.check(over["shed"] > 0 and over["retry_after"] == over["shed"],
                 "excess requests are shed with 503 and Retry-After",
                 f"{over['shed']} shed, {over['retry_after']} with Retry-After")
    checks.check(over["other"] == 0 and not other and
                 sum(over["errors"].values()) == 0,
                 "nothing but 200 and 503: no other status, no timeout, no connection error",
                 f"wrk other={over['other']} errors={over['errors']}; probes other={len(other)}")
    p99_ok = pct(accepted, 99)
    checks.check(p99_ok is not None and p99_ok <= 2000,
                 "p99 of the requests it accepts stays bounded (<= 2 s, a fifth of REQUEST_TIMEOUT_MS)",
                 f"{p99_ok and round(p99_ok, 1)} ms over {len(accepted)} probe requests "
                 f"(idle-limit p99 {base['latency_us']['p99'] / 1000:.1f} ms)")
    shed_ms = [r["ms"] for r in shed]
    checks.check(not shed or (pct(shed_ms, 99) or 0) <= 250,
                 "shed requests are answered quickly (p99 <= 250 ms)",
                 f"{len(shed)} probes shed, p99 {pct(shed_ms, 99) and round(pct(shed_ms, 99), 1)} ms")
    shed_body = next((r.get("body") for r in shed if r.get("body")), None)
    if shed:
        checks.check(all(r.get("code") == "INTERNAL_SERVER_ERROR" and r.get("request_id")
                         and r.get("retry_after") for r in shed),
                     "a shed answer is a contract error with requestId and Retry-After",
                     json.dumps(shed_body)[:200])
    for name, poller in (("/healthz", health), ("/metrics", metrics)):
        ok = [s for s in poller.samples if s[1] == 200]
        checks.check(poller.samples and len(ok) == len(poller.samples)
                     and (pct([s[2] for s in poller.samples], 99) or 0) <= 2000,
                     f"{name} still answers under overload (all 200, p99 <= 2 s)",
                     f"{len(ok)}/{len(poller.samples)} ok, p99 "
                     f"{round(pct([s[2] for s in poller.samples], 99) or 0, 1)} ms")
    checks.check(inst.alive() and http_get(inst.port, "/readyz")[0] == 200,
                 "the server is alive and ready afterwards")
    inst.stop()
    # For comparison (reported, not checked): the same overload with the limit off.
    inst = Instance("overload-unlimited", args.bin, {**inst.env, "MAX_CONCURRENT_REQUESTS": "0"},
                    work, cpus=SERVER_CPU)
    inst.start()
    probes_off = QueryLoad(lambda: [inst.port], token, threads=2).start()
    off = run_wrk(inst.port, token, 10 * limit, args.overload_seconds, 1, work)
    probes_off.stop()
    inst.stop()
    unlimited = {"wrk": off, "probe_ms": summary([r["ms"] for r in probes_off.records
                                                   if r.get("status") == 200])}
    log(f"the same overload without a limit: probe p99 {unlimited['probe_ms'].get('p99')} ms, "
        f"wrk p99 {off['latency_us']['p99'] / 1000:.0f} ms")
    gw.close()
    return {"checks": checks, "pool": pool, "max_concurrent_requests": limit,
            "capacity": base, "overload": over, "overload_connections": 10 * limit,
            "probe_accepted_ms": summary(accepted), "probe_shed_ms": summary(shed_ms),
            "healthz_ms": summary([s[2] for s in health.samples]),
            "metrics_ms": summary([s[2] for s in metrics.samples]),
            "same_overload_without_limit": unlimited}


# ------------------------------------------------------------------------------------------
# Rolling restart behind HAProxy
# ------------------------------------------------------------------------------------------


def scenario_rolling(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("rolling")
    db = "faults_rolling"
    pg.createdb(db)
    gw = Gateway()
    drain_s = 3
    env = {"DATABASE_URL": pg.url(db), "SMS_WEBHOOK_URL": gw.url("/a"),
           "SHUTDOWN_DRAIN_SECONDS": str(drain_s)}
    instances = [Instance(f"r{i}", args.bin, env, work) for i in range(3)]
    for inst in instances:
        inst.start()
    lb = Haproxy(work, instances, inter_ms=500)
    if not checks.check(lb.wait_all_up([i.name for i in instances]), "HAProxy sees all three up"):
        lb.stop()
        for inst in instances:
            inst.stop()
        return {"checks": checks}
    client = Client()
    user = sign_in(client, lb.port, fresh_phone())
    signins = SignInLoad(lambda: [lb.port], threads=4, rate=60).start()
    me_load = QueryLoad(lambda: [lb.port], user["accessToken"], threads=2, rate=60).start()
    time.sleep(args.warmup)
    restarts = []
    for inst in instances:
        t0 = now()
        inst.sigterm()
        code = inst.wait_exit(drain_s + 40)
        t_exit = now()
        inst.start(wait=True)
        back = lb.wait_all_up([i.name for i in instances], timeout=30)
        restarts.append({"instance": inst.name, "exit_status": code,
                         "sigterm_to_exit_s": round(t_exit - t0, 2),
                         "back_in_balancer_s": round(now() - t0, 2), "rejoined": back})
        log(f"{inst.name}: exited {code} {t_exit - t0:.1f}s after SIGTERM; back in the balancer "
            f"after {now() - t0:.1f}s")
    time.sleep(2)
    signins.stop()
    me_load.stop()
    records = signins.records + me_load.records
    lost = [r for r in records if r.get("status") != 200 or r.get("code")]
    checks.check(all(r["exit_status"] == 0 for r in restarts),
                 "every instance exits cleanly on SIGTERM", [r["exit_status"] for r in restarts])
    checks.check(all(r["rejoined"] for r in restarts), "every instance rejoins the balancer")
    checks.check(len(records) > 0 and not lost,
                 "zero lost requests through the restarts",
                 f"{len(records)} requests, {len(lost)} failed: " +
                 json.dumps([{k: r.get(k) for k in ("status", "code", "transport_error")}
                             for r in lost[:5]]))
    tokens = tokens_report(client, lb.port, signins.signed_in, checks)
    lb.stop()
    for inst in instances:
        inst.stop()
    gw.close()
    return {"checks": checks, "drain_seconds": drain_s, "haproxy_check": "GET /readyz every 500 ms, fall 2, rise 2",
            "requests": len(records), "failed": len(lost), "restarts": restarts,
            "latency_ms": summary([r["ms"] for r in records]), "tokens": tokens}


# ------------------------------------------------------------------------------------------
# Many instances: limits exact across three instances, subscriptions, revocation
# ------------------------------------------------------------------------------------------


def concurrently(n: int, fn) -> list:
    """Runs fn(i) for i in range(n) on n threads released together; the results in order."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def codes(results: list[dict]) -> dict:
    out: dict[str, int] = {}
    for r in results:
        key = r.get("code") or ("ok" if r.get("status") == 200 else f"http {r.get('status')}")
        out[key] = out.get(key, 0) + 1
    return out


def scenario_instances(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("instances")
    db = "faults_instances"
    pg.createdb(db)
    gw = Gateway()
    # The range breaker above the per-phone budget, so the budget phone meets its own limit first.
    max_attempts, per_hour, range_per_hour, global_per_minute = 5, 5, 6, 30
    env = {"DATABASE_URL": pg.url(db), "SMS_WEBHOOK_URL": gw.url("/a"),
           "OTP_MAX_ATTEMPTS": str(max_attempts), "PHONE_CODES_PER_HOUR": str(per_hour),
           "PHONE_CODES_PER_DAY": "100", "OTP_RESEND_COOLDOWN_SECONDS": "1",
           "SMS_RANGE_PER_HOUR": str(range_per_hour), "SMS_RANGE_DIGITS": "3",
           "SMS_GLOBAL_PER_MINUTE": str(global_per_minute)}
    instances = [Instance(f"m{i}", args.bin, env, work) for i in range(3)]
    for inst in instances:
        inst.start()
    lb = Haproxy(work, instances, inter_ms=500)
    lb.wait_all_up([i.name for i in instances])
    ports = [i.port for i in instances]
    result: dict = {"instances": 3}
    sends = 0  # codes accepted so far (the global per-minute cap counts them)

    # Per-code attempts: 30 wrong guesses at once, spread over the three instances.
    phone = "+79127770001"
    r = Client().gql(lb.port, REQUEST_CODE, {"p": phone})
    code = (data(r, "requestCode") or {}).get("devCode")
    sends += 1
    wrong = "0000" if code != "0000" else "1111"
    guesses = concurrently(30, lambda i: Client().gql(ports[i % 3], VERIFY_CODE, {"p": phone, "c": wrong}))
    got = codes(guesses)
    result["per_code_attempts"] = got
    checks.check(got.get("INVALID_CODE") == max_attempts,
                 f"per-code attempts exact: {max_attempts} INVALID_CODE of 30 concurrent wrong guesses over 3 instances",
                 got)
    right = Client().gql(ports[1], VERIFY_CODE, {"p": phone, "c": code})
    checks.check(right.get("code") == "RATE_LIMITED", "the right code is refused once the code is dead",
                 right.get("code"))

    # Per-phone budget: waves of 6 concurrent requestCodes, one wave a second (the cooldown).
    phone = "+79127780002"  # a range of its own: the range breaker must not interfere
    accepted = 0
    waves = []
    for wave in range(per_hour + 3):
        res = concurrently(6, lambda i: Client().gql(ports[i % 3], REQUEST_CODE, {"p": phone}))
        ok = sum(1 for x in res if data(x, "requestCode"))
        accepted += ok
        waves.append(codes(res))
        time.sleep(1.1)
    sends += accepted
    result["per_phone_budget"] = {"accepted": accepted, "waves": waves}
    checks.check(accepted == per_hour,
                 f"per-phone budget exact: {per_hour} codes an hour over {per_hour + 3} waves of 6 concurrent requests",
                 f"{accepted} accepted")

    # Range breaker: 12 new numbers of one range at once.
    res = concurrently(12, lambda i: Client().gql(ports[i % 3], REQUEST_CODE, {"p": f"+79127771{i:03d}"}))
    ok = sum(1 for x in res if data(x, "requestCode"))
    sends += ok
    result["range_breaker"] = codes(res)
    checks.check(ok == range_per_hour, f"range breaker exact: {range_per_hour} codes to one range of 12 concurrent",
                 codes(res))

    # Global send cap (per minute): 60 new numbers in distinct ranges at once.
    remaining = global_per_minute - sends
    res = concurrently(60, lambda i: Client().gql(ports[i % 3], REQUEST_CODE,
                                                  {"p": f"+7912{8000 + i * 7:04d}{i % 10}00"}))
    ok = sum(1 for x in res if data(x, "requestCode"))
    result["global_cap"] = {"cap_per_minute": global_per_minute, "already_sent": sends,
                            "answers": codes(res)}
    checks.check(ok == max(0, remaining),
                 f"send cap exact: SMS_GLOBAL_PER_MINUTE={global_per_minute}, {sends} already sent, "
                 f"60 concurrent new numbers -> {remaining} accepted", f"{ok} accepted")
    # The global cap is spent for a minute: restart without it for the rest.
    lb.stop()
    for inst in instances:
        inst.stop()
    env2 = {k: v for k, v in env.items() if k != "SMS_GLOBAL_PER_MINUTE"}
    env2["SMS_RANGE_PER_HOUR"] = "0"
    instances = [Instance(f"n{i}", args.bin, env2, work) for i in range(3)]
    for inst in instances:
        inst.start()
    ports = [i.port for i in instances]

    # Subscriptions: one inviter subscribed on every instance; invitees activate on each.
    client = Client()
    inviter = sign_in(client, ports[0], fresh_phone())
    subs = [WsSubscription(p, inviter["accessToken"]) for p in ports]
    time.sleep(0.5)
    invitees = []
    for i in range(3):
        invitee = sign_in(client, ports[i], fresh_phone())
        act = client.gql(ports[i], ACTIVATE, {"c": inviter["user"]["inviteCode"]},
                         token=invitee["accessToken"])
        invitees.append((invitee["user"]["id"], data(act, "activateInvite") is not None))
    received = []
    for sub in subs:
        got_ids = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(got_ids) < 3:
            msg = sub.recv(timeout=max(0.05, deadline - time.monotonic()))
            if msg and msg.get("type") == "next":
                got_ids.add(((msg.get("payload") or {}).get("data") or {})
                            .get("invitedUserJoined", {}).get("id"))
        received.append(len(got_ids & {i for i, _ in invitees}))
        sub.close()
    result["subscriptions"] = {"subscribed_on": 3, "activations_on": 3,
                               "events_received_per_subscription": received}
    checks.check(all(ok for _, ok in invitees) and received == [3, 3, 3],
                 "every subscription gets every activation, whichever instance it hit",
                 received)

    # Revocation: logoutAll on one instance; the others refuse the access token within 1 s.
    victim = sign_in(client, ports[0], fresh_phone())
    for p in ports:
        data(client.gql(p, ME, token=victim["accessToken"]), "me")
    t0 = time.monotonic()
    client.gql(ports[0], LOGOUT_ALL, token=victim["accessToken"])
    seen = {}
    while time.monotonic() - t0 < 3 and len(seen) < 2:
        for p in ports[1:]:
            if p not in seen:
                r = client.gql(p, ME, token=victim["accessToken"])
                if r.get("code") == "UNAUTHENTICATED":
                    seen[p] = (time.monotonic() - t0) * 1000
        time.sleep(0.01)
    result["revocation_seen_ms"] = [round(seen.get(p, -1)) for p in ports[1:]]
    checks.check(len(seen) == 2 and max(seen.values()) <= 1000,
                 "revocation (logoutAll on one instance) is seen by the others within 1 s",
                 result["revocation_seen_ms"])
    for inst in instances:
        inst.stop()
    gw.close()
    return {"checks": checks, **result}


# ------------------------------------------------------------------------------------------
# Sizing: memory per instance and per subscription, statements and rows per sign-in,
# database connections per instance.
# ------------------------------------------------------------------------------------------


def metric(port: int, name: str) -> float:
    status, body, _ = http_get(port, "/metrics")
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def pg_rows_written(pg: PrivatePg, db: str) -> dict:
    pg.psql("SELECT pg_stat_force_next_flush()", db)
    time.sleep(1.2)  # the statistics collector's flush
    rows = pg.psql("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables", db)
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def pg_connections(pg: PrivatePg, db: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")[0][0])


class Subscribers:
    """`n` open subscriptions (one WebSocket each) and a thread that reads them all, answering
    the server's pings as a real client does (the server drops a peer silent for 3 pings)."""

    def __init__(self, port: int, token: str, n: int, reconnect: bool = False):
        import select
        self.select = select
        self.port, self.token, self.reconnect = port, token, reconnect
        self.reopened = 0
        self.close_times: list[float] = []
        self.subs = [WsSubscription(port, token) for _ in range(n)]
        for sub in self.subs:
            sub.sock.setblocking(False)
        self.events = 0
        self.pings = 0
        self.closed = 0
        self.bytes = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def open_count(self) -> int:
        return len(self.subs) - self.closed

    def _lost(self, by_sock: dict, sock) -> None:
        """A socket the server closed: counted, and reopened as a client would."""
        self.closed += 1
        self.close_times.append(now())
        del by_sock[sock]
        if self.reconnect and not self.stop_event.is_set():
            try:
                sub = WsSubscription(self.port, self.token)
                sub.sock.setblocking(False)
                self.subs.append(sub)
                by_sock[sub.sock] = sub
                self.reopened += 1
            except (OSError, ConnectionError):
                pass

    def _frames(self, sub) -> None:
        """Handles every whole frame in the socket's buffer."""
        import struct as st
        while True:
            buf = sub.buf
            if len(buf) < 2:
                return
            opcode, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, i = st.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, i = st.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < i + n:
                return
            payload, sub.buf = buf[i:i + n], buf[i + n:]
            if opcode == 0x9:  # WebSocket ping: pong with the same payload
                self.pings += 1
                mask = os.urandom(4)
                masked = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
                sub.sock.setblocking(True)
                sub.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
                sub.sock.setblocking(False)
            elif opcode == 0x1:
                try:
                    msg = json.loads(payload)
                except ValueError:
                    continue
                if msg.get("type") == "next":
                    self.events += 1
                elif msg.get("type") == "ping":
                    sub.sock.setblocking(True)
                    sub.send({"type": "pong"})
                    sub.sock.setblocking(False)

    def _drain(self) -> None:
        import selectors
        by_sock = {s.sock: s for s in self.subs}
        # epoll, not select(): the harness's own sockets can number past FD_SETSIZE (1024).
        selector = selectors.DefaultSelector()
        registered: set = set()
        while not self.stop_event.is_set() and by_sock:
            for sock in list(registered - set(by_sock)):
                selector.unregister(sock)
                registered.discard(sock)
                sock.close()
            for sock in set(by_sock) - registered:
                selector.register(sock, selectors.EVENT_READ)
                registered.add(sock)
            ready = [key.fileobj for key, _ in selector.select(0.2)]
            for sock in ready:
                if sock not in by_sock:
                    continue
                sub = by_sock[sock]
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self._lost(by_sock, sock)
                    continue
                self.bytes += len(chunk)
                sub.buf += chunk
                try:
                    self._frames(sub)
                except OSError:
                    self._lost(by_sock, sock)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        for sub in self.subs:
            sub.close()


def scenario_sizing(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("sizing")
    out: dict = {}
    gw = Gateway()
    for backend in ("postgres", "sqlite"):
        db = "faults_sizing"
        if backend == "postgres":
            url = pg.createdb(db)
        else:
            path = work / "sizing.db"
            url = f"sqlite://{path}?mode=rwc"
        inst = Instance(f"sizing-{backend}", args.bin, {"DATABASE_URL": url,
                                                        "SMS_WEBHOOK_URL": gw.url("/a"),
                                                        "RUST_LOG": "warn"}, work)
        inst.start()
        time.sleep(1)
        res: dict = {"pool": 10, "rss_idle_kb": inst.rss_kb(), "fds_idle": inst.fds()}
        if backend == "postgres":
            res["db_connections_idle"] = pg_connections(pg, db)
        client = Client()
        # Statements and rows per sign-in: sequential sign-ins of new phones, each followed by
        # its SMS delivery (the outbox worker's statements are part of a sign-in's cost).
        n = 200
        before_stmt = metric(inst.port, "db_statements_total")
        before_rows = pg_rows_written(pg, db) if backend == "postgres" else None
        commits_sql = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"
        before_commits = int(pg.psql(commits_sql, db)[0][0]) if backend == "postgres" else None
        ok = 0
        for _ in range(n):
            if sign_in(client, inst.port, fresh_phone()):
                ok += 1
        # Until the outbox worker is done too: no new statement for 2 s.
        deadline = time.monotonic() + 30
        last = -1.0
        while time.monotonic() < deadline:
            cur = metric(inst.port, "db_statements_total")
            if cur == last:
                break
            last = cur
            time.sleep(2)
        stmts = last - before_stmt
        res["sms_delivered"] = metric(inst.port, "sms_codes_delivered_total")
        res["signins"] = ok
        res["statements_per_signin"] = round(stmts / max(ok, 1), 2)
        if before_rows is not None:
            after = pg_rows_written(pg, db)
            per_table = {}
            total = 0
            for table, (i, u, d) in after.items():
                bi, bu, bd = before_rows.get(table, (0, 0, 0))
                delta = (i - bi, u - bu, d - bd)
                if any(delta):
                    per_table[table] = {"inserted": round(delta[0] / ok, 2),
                                        "updated": round(delta[1] / ok, 2),
                                        "deleted": round(delta[2] / ok, 2)}
                    total += sum(delta)
            res["rows_written_per_signin"] = round(total / max(ok, 1), 2)
            # Committed transactions (each a WAL flush with synchronous_commit on), including
            # the single statements outside a transaction and the worker's; /metrics and psql
            # polls of this harness add a few.
            res["commits_per_signin"] = round(
                (int(pg.psql(commits_sql, db)[0][0]) - before_commits) / max(ok, 1), 2)
            res["rows_written_per_signin_by_table"] = per_table
        # Under load: 16 sign-in threads and 8 me threads, unthrottled, for 10 s.
        user = sign_in(client, inst.port, fresh_phone())
        load = SignInLoad(lambda: [inst.port], threads=16, rate=0).start()
        me = QueryLoad(lambda: [inst.port], user["accessToken"], threads=8).start()
        samples = []
        for _ in range(10):
            time.sleep(1)
            samples.append((inst.rss_kb(), inst.fds(),
                            pg_connections(pg, db) if backend == "postgres" else None))
        load.stop()
        me.stop()
        res["rss_under_load_kb_max"] = max(s[0] for s in samples)
        res["fds_under_load_max"] = max(s[1] for s in samples)
        if backend == "postgres":
            res["db_connections_under_load_max"] = max(s[2] for s in samples)
        # Per open subscription: RSS and fds before and after opening 300.
        time.sleep(1)
        rss0, fds0 = inst.rss_kb(), inst.fds()
        subs = Subscribers(inst.port, user["accessToken"], 300)
        time.sleep(2)
        rss1, fds1 = inst.rss_kb(), inst.fds()
        subs.close()
        res["subscriptions_opened"] = 300
        res["rss_per_subscription_kb"] = round((rss1 - rss0) / 300, 1)
        res["fds_per_subscription"] = round((fds1 - fds0) / 300, 2)
        inst.stop()
        out[backend] = res
        log(f"sizing {backend}: {json.dumps(res)}")
    checks.check(all(out[b]["signins"] == 200 for b in out), "every sizing sign-in succeeded")
    gw.close()
    bench = ROOT / "bench" / "results" / "latest.json"
    if bench.exists():
        out["bench_latest_json"] = "bench/results/latest.json (throughput per vCPU: see docs/sizing.md)"
    return {"checks": checks, **out}


# ------------------------------------------------------------------------------------------
# Soak: mixed load for a long time; RSS slope, fds, DB connections, p99 per window.
# ------------------------------------------------------------------------------------------


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    xs = [p[0] / 60 for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def scenario_soak(args, pg: PrivatePg, work: Path) -> dict:
    checks = Checks("soak")
    db = "faults_soak"
    pg.createdb(db)
    gw = Gateway()
    # Access tokens outlive the soak (the default 15 min would close every subscription and
    # refuse every `me` halfway through a 30-minute run).
    ttl = str(int(args.soak_minutes * 60 + 600))
    inst = Instance("soak", args.bin, {"DATABASE_URL": pg.url(db), "SMS_WEBHOOK_URL": gw.url("/a"),
                                       "ACCESS_TOKEN_TTL_SECONDS": ttl, "RUST_LOG": "warn"}, work)
    inst.start()
    client = Client()
    inviter = sign_in(client, inst.port, fresh_phone())
    # Some invitees, so `nested` has something to walk.
    for _ in range(30):
        s = sign_in(client, inst.port, fresh_phone())
        client.gql(inst.port, ACTIVATE, {"c": inviter["user"]["inviteCode"]}, token=s["accessToken"])
    subs = Subscribers(inst.port, inviter["accessToken"], args.soak_subscriptions, reconnect=True)
    port = lambda: [inst.port]  # noqa: E731
    signins = SignInLoad(port, threads=2, rate=20).start()
    me = QueryLoad(port, inviter["accessToken"], ME, threads=2, rate=100).start()
    nested = QueryLoad(port, inviter["accessToken"], NESTED, threads=1, rate=20).start()
    # Invites: every new user activates the inviter's code (each activation is an event on
    # every open subscription).
    stop_inv = threading.Event()
    activations = [0]

    def invites():
        c = Client()
        while not stop_inv.is_set():
            s = sign_in(c, inst.port, fresh_phone())
            if s and data(c.gql(inst.port, ACTIVATE, {"c": inviter["user"]["inviteCode"]},
                                token=s["accessToken"]), "activateInvite"):
                activations[0] += 1
            stop_inv.wait(1.0)

    inv_thread = threading.Thread(target=invites, daemon=True)
    inv_thread.start()
    duration = args.soak_minutes * 60
    every = max(5.0, min(30.0, duration / 60))
    t_start = now()
    samples = []
    last_n = 0
    while now() - t_start < duration:
        time.sleep(every)
        records = signins.records + me.records + nested.records
        window = [r for r in records if r["start"] >= now() - every]
        errors = [r for r in window if r.get("status") != 200 or r.get("code")]
        samples.append({"t_s": round(now() - t_start, 1), "rss_kb": inst.rss_kb(), "fds": inst.fds(),
                        "db_connections": pg_connections(pg, db),
                        "subscriptions_open": subs.open_count(),
                        "requests": len(window), "errors": len(errors),
                        "error_codes": sorted({str(r.get("code") or r.get("status")) for r in errors}),
                        "p99_ms": round(pct([r["ms"] for r in window], 99) or 0, 1)})
        if len(samples) % 10 == 0:
            log(f"soak {samples[-1]}")
    stop_inv.set()
    signins.stop()
    me.stop()
    nested.stop()
    inv_thread.join(10)
    subs.close()
    alive = inst.alive()
    inst.stop()
    gw.close()
    warm = [s for s in samples if s["t_s"] >= duration * 0.2]
    slope = slope_per_minute([(s["t_s"], s["rss_kb"]) for s in warm])
    rss_first, rss_last = warm[0]["rss_kb"], warm[-1]["rss_kb"]
    fds = [s["fds"] for s in warm]
    conns = [s["db_connections"] for s in warm]
    p99s = [s["p99_ms"] for s in warm]
    total_errors = sum(s["errors"] for s in samples)
    checks.check(alive, "the server ran the whole soak")
    checks.check(slope is not None and slope * 60 < max(0.1 * rss_first, 8192),
                 "RSS flat after warm-up (growth over an hour at the measured slope < 10 % or 8 MiB)",
                 f"slope {slope and round(slope, 1)} KiB/min; {rss_first} -> {rss_last} KiB")
    checks.check(max(fds) - min(fds) <= 20, "open file descriptors do not grow",
                 f"{min(fds)}..{max(fds)}")
    checks.check(max(conns) <= 10 + 4, "database connections stay within the pool (+ listeners)",
                 f"{min(conns)}..{max(conns)}")
    checks.check(total_errors == 0, "no request failed", total_errors)
    closes = sorted({round(t) for t in subs.close_times})
    checks.check(subs.closed == 0, "every subscription stays open (pings answered)",
                 f"{subs.closed} closed by the server (reopened {subs.reopened}) at harness "
                 f"seconds {closes[:10]}; {subs.events} events, {subs.pings} server pings answered")
    first_half = p99s[: len(p99s) // 2] or p99s
    second_half = p99s[len(p99s) // 2:] or p99s
    checks.check(statistics.median(second_half) <= 2 * statistics.median(first_half) + 20,
                 "p99 stable (median window p99 of the second half within 2x + 20 ms of the first)",
                 f"{statistics.median(first_half)} -> {statistics.median(second_half)} ms")
    return {"checks": checks, "minutes": args.soak_minutes,
            "label": "full 30-minute soak" if args.soak_minutes >= 30 else
                     f"SHORT soak ({args.soak_minutes} min), not the issue's 30 minutes",
            "subscriptions_open": args.soak_subscriptions, "activations": activations[0],
            "subscription_events_received": subs.events, "server_pings_answered": subs.pings,
            "subscriptions_closed_by_server": subs.closed, "subscriptions_reopened": subs.reopened,
            "rss_slope_kib_per_min_after_warmup": slope and round(slope, 2),
            "rss_kib_first_last": [rss_first, rss_last], "fds_min_max": [min(fds), max(fds)],
            "db_connections_min_max": [min(conns), max(conns)],
            "p99_ms_windows_min_median_max": [min(p99s), statistics.median(p99s), max(p99s)],
            "requests": sum(s["requests"] for s in samples), "errors": total_errors,
            "samples": samples}


# ------------------------------------------------------------------------------------------


SCENARIOS = {"outage": scenario_outage, "sigkill": scenario_sigkill, "overload": scenario_overload,
             "rolling": scenario_rolling, "instances": scenario_instances,
             "sizing": scenario_sizing, "soak": scenario_soak}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", help=f"any of {', '.join(list(SCENARIOS))}")
    p.add_argument("--ci", action="store_true", help=f"the fast subset: {' '.join(FAST)}")
    p.add_argument("--binary", help="server binary (default: target/release/phone-auth, built)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before a fault")
    p.add_argument("--outage-seconds", type=float, default=10.0)
    p.add_argument("--overload-seconds", type=int, default=8)
    p.add_argument("--soak-minutes", type=float, default=30.0)
    p.add_argument("--soak-subscriptions", type=int, default=300)
    p.add_argument("--pin", action="store_true", help="overload: server on core 1, wrk on core 0")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an extra variable for every server started (repeatable); e.g. a heap "
                   "profiler's LD_PRELOAD, see docs/faults.md")
    args = p.parse_args()
    for pair in args.server_env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            p.error(f"--server-env wants NAME=VALUE, not {pair!r}")
        BASE_ENV[name] = value
    names = args.scenarios or (FAST if args.ci else [s for s in ALL if s in SCENARIOS])
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {unknown}; known: {list(SCENARIOS)}")
    if args.pin and (os.cpu_count() or 1) > 1:
        global SERVER_CPU, LOAD_CPU
        SERVER_CPU, LOAD_CPU = "1", "0"
    tools = (["wrk"] if "overload" in names else []) + \
        (["haproxy"] if {"rolling", "instances"} & set(names) else [])
    ensure_tools(tools)
    args.bin = binary(args)
    work = Path(tempfile.mkdtemp(prefix="phone-auth-faults."))
    log(f"work directory {work}; binary {args.bin}")
    import signal as sig
    sig.signal(sig.SIGTERM, lambda *_: sys.exit(143))
    sig.signal(sig.SIGINT, lambda *_: sys.exit(130))
    pg = PrivatePg()
    failed = []
    try:
        pg.start()
        log(f"private PostgreSQL on 127.0.0.1:{pg.port} ({pg.dir})")
        for name in names:
            log(f"=== {name}")
            started = time.monotonic()
            try:
                result = SCENARIOS[name](args, pg, work)
            except Exception as e:  # a scenario that crashes is a failed scenario
                import traceback
                traceback.print_exc()
                checks = Checks(name)
                checks.check(False, "the scenario ran to the end", repr(e))
                result = {"checks": checks}
            checks = result.pop("checks")
            out = {"scenario": name, "passed": checks.passed,
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "commit": source_commit(),
                   "seconds": round(time.monotonic() - started, 1), "machine": machine(),
                   "checks": checks.items, **result}
            path = write_result(name, out)
            log(f"=== {name}: {'PASSED' if checks.passed else 'FAILED'} in {out['seconds']} s -> "
                f"{path.relative_to(ROOT)}")
            if not checks.passed:
                failed.append(name)
    finally:
        for inst in Instance.started:
            if inst.alive():
                inst.sigkill()
        pg.destroy()
        if failed and not args.keep:
            log(f"logs of the failed run kept in {work}")
        elif not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")
    log("all scenarios passed" if not failed else f"FAILED: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
