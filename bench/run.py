#!/usr/bin/env python3
"""The phone-auth benchmark: one command, `bench/run` (or `make bench`). Python 3 stdlib only.

What it does, in order (see docs/performance.md):

1. installs what is missing with apt (wrk; pgbench via postgresql-contrib; taskset via
   util-linux) and builds the release binaries (`cargo build --release -p phone-auth -p bench`);
2. makes a fresh PostgreSQL database (`phone_auth_bench`, dropped and created) and a fresh SQLite
   file, starts the real server on each and times start -> `/readyz` 200 (fresh database, then a
   restart on the seeded one);
3. seeds through the public API (one user with 1,000 invitees; 3 invitees under each of the
   first 100 of those), then probes one request of each operation at a time on the idle server
   to count its SQL statements;
4. drives load with wrk (1 thread, 64 connections, pinned to core 0) against the real server
   (scenarios me, nested, signin) and the baselines (a) axum fixed JSON, (b) async-graphql from
   memory, (c) async-graphql + one SeaORM primary-key read, (d) the nested query with a default
   DataLoader per item (no look-ahead), (e) the nested query's schema answered from memory
   (async-graphql's work on that answer with no database: a reference), all pinned to core 1 together with
   PostgreSQL (its postmaster and backends, restored to all cores at the end); pgbench runs a
   requestCode-like transaction (one INSERT + one PK SELECT, prepared) as the write ceiling;
5. warm-up, then several interleaved rounds; medians; a table in the terminal and
   bench/results/latest.json.

Run `bench/run --help` for the options. The parts live in bench/harness/ (install, machine,
procfs, client, servers, postgres, seed, load, report); this file only reads the options and
runs them in order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness.client import Client
from harness.common import JWT_SECRET, ME_QUERY, NESTED_QUERY, ROOT, die, log
from harness.install import ensure_tools
from harness.load import Target, measure, median_of
from harness.machine import build, git_state, machine, wait_quiet
from harness.postgres import PGBENCH_TABLE, PgPin, psql, with_database
from harness.report import check_targets, ratio_rows, table
from harness.seed import check_nested, concurrent_statements, probe, seed
from harness.servers import Server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run (10)")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds (3); medians")
    p.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per target (3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections / pgbench clients")
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--scenarios", default="me,nested,signin", help="me,nested,signin")
    p.add_argument("--pg-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL URL allowed to create databases")
    p.add_argument("--pg-database", default="phone_auth_bench", help="dropped and created")
    # Tuned on the 2-core machine (docs/performance.md, "Pool size"): with the server and its database on
    # one core, more connections only add context switches (and, on SQLite, page caches).
    p.add_argument("--pool-postgres", type=int, default=4,
                   help="DATABASE_MAX_CONNECTIONS on PostgreSQL (4)")
    p.add_argument("--pool-sqlite", type=int, default=2,
                   help="DATABASE_MAX_CONNECTIONS on SQLite (2)")
    p.add_argument("--sms-delay-ms", type=int, default=0,
                   help="the console SMS provider's simulated delay (0: delivery work is "
                        "measured inside the signin run, not after it)")
    p.add_argument("--rust-log", default="info", help="RUST_LOG of the real server (info)")
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--seed-workers", type=int, default=16)
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--no-install", action="store_true", help="never run apt-get")
    p.add_argument("--wait-quiet", type=float, default=300,
                   help="wait up to this many seconds for load average < 1 (300)")
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "latest.json"))
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, SQLite file)")
    args = p.parse_args()

    backends = [b for b in args.backends.split(",") if b]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if any(b not in ("sqlite", "postgres") for b in backends):
        die("--backends takes sqlite and/or postgres")
    if any(s not in ("me", "nested", "signin") for s in scenarios):
        die("--scenarios takes me, nested and/or signin")
    if (os.cpu_count() or 1) < 2:
        log("WARNING: fewer than 2 cores: load generator and server share one")

    ensure_tools(not args.no_install)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = ROOT / target_dir
    if not args.no_build:
        build(target_dir)
    release = target_dir / "release"

    load_before = wait_quiet(args.wait_quiet, 1.0)
    started_at = dt.datetime.now(dt.timezone.utc)
    info = machine()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {load_before[0]:.2f}")

    workdir = Path(tempfile.mkdtemp(prefix="phone-auth-bench-"))
    servers: list[Server] = []
    pin = PgPin(args.pg_admin_url, args.server_core)
    pg_url = with_database(args.pg_admin_url, args.pg_database)
    ready: dict[str, dict[str, float]] = {}
    seeds: dict[str, dict] = {}
    probes: dict[str, dict] = {}
    targets: list[Target] = []
    prefix_counter = [99]

    def start(server: Server) -> float:
        servers.append(server)
        return server.start()

    def real_env(backend: str, url: str) -> dict:
        return {
            "APP_ENV": "development",
            "DATABASE_URL": url,
            "DATABASE_MAX_CONNECTIONS": str(args.pool_postgres if backend == "postgres"
                                            else args.pool_sqlite),
            "JWT_SECRET": JWT_SECRET,
            "ACCESS_TOKEN_TTL_SECONDS": "86400",
            "OTP_EXPOSE": "true",
            "IP_CODES_PER_HOUR": "0",
            "IP_CODES_PER_DAY": "0",
            "IP_VERIFY_PER_HOUR": "0",
            "SMS_GLOBAL_PER_MINUTE": "0",
            # The SMS pumping guards (docs/sms-pumping.md) would refuse a load test's codes:
            # its phones are consecutive (one range) and far more than the global caps; and the
            # conversion breaker could trip while the first wave of codes awaits verification.
            "SMS_GLOBAL_PER_HOUR": "0",
            "SMS_GLOBAL_PER_DAY": "0",
            "SMS_RANGE_PER_HOUR": "0",
            "SMS_COUNTRY_MIN_SENDS": "0",
            "SMS_DELAY_MS": str(args.sms_delay_ms),
            "RUST_LOG": args.rust_log,
        }

    try:
        if "postgres" in backends:
            log(f"fresh database {args.pg_database}")
            psql(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{args.pg_database}" WITH (FORCE)')
            psql(args.pg_admin_url, f'CREATE DATABASE "{args.pg_database}"')
            pin.pin()

        for backend in backends:
            url = pg_url if backend == "postgres" else f"sqlite://{workdir / 'bench.db'}?mode=rwc"
            env = real_env(backend, url)
            real = Server(f"phone-auth-{backend}", release / "phone-auth", env,
                          args.server_core, workdir)
            fresh_ms = start(real)
            log(f"{backend}: phone-auth ready in {fresh_ms:.0f} ms (fresh database, migrations)")
            seeded = seed(real.port, args.seed_workers)
            seeds[backend] = seeded
            log(f"{backend}: seeded {seeded['users']} users in {seeded['seconds']} s")
            # Restart: the measured process starts clean, and its start on a seeded database
            # is timed too.
            real.stop()
            servers.remove(real)
            real = Server(f"phone-auth-{backend}", release / "phone-auth", env,
                          args.server_core, workdir)
            restart_ms = start(real)
            ready[backend] = {"fresh": round(fresh_ms, 1), "restart": round(restart_ms, 1)}
            log(f"{backend}: phone-auth ready in {restart_ms:.0f} ms (restart, seeded database)")
            check_nested(Client(real.port), seeded["token"])
            probes[backend] = probe(real.port, seeded["token"])
            for name, query in (("me", ME_QUERY), ("nested", NESTED_QUERY)):
                probes[backend][f"{name}_x{args.connections}"] = round(concurrent_statements(
                    real.port, seeded["token"], query, args.connections, 10), 3)
            log(f"{backend}: statements per operation (one at a time): {probes[backend]}")

            base_env = {"DATABASE_URL": url, "DATABASE_MAX_CONNECTIONS": env["DATABASE_MAX_CONNECTIONS"],
                        "BENCH_USER_ID": str(seeded["user_id"])}
            base_c = Server(f"baseline-db-{backend}", release / "baseline-db", base_env,
                            args.server_core, workdir)
            ms = start(base_c)
            log(f"{backend}: baseline (c) ready in {ms:.0f} ms")
            me_data = Client(base_c.port).gql(ME_QUERY)["me"]
            if me_data["id"] != str(seeded["user_id"]):
                die(f"baseline (c) answered {me_data}")

            targets.append(Target(f"(c)@{backend}", "me", "(c) graphql+seaorm", backend,
                                  "baseline", base_c, "me.lua", seeded["token"]))
            if "nested" in scenarios:
                base_d = Server(f"baseline-dataloader-{backend}", release / "baseline-dataloader",
                                base_env, args.server_core, workdir)
                ms = start(base_d)
                log(f"{backend}: baseline (d) ready in {ms:.0f} ms")
                # Same answer as the real server, or the comparison means nothing.
                want = Client(real.port).gql(NESTED_QUERY, token=seeded["token"])
                got = Client(base_d.port).gql(NESTED_QUERY)
                if got != want:
                    die(f"baseline (d) answers the nested query differently: {str(got)[:300]}")
                targets.append(Target(f"(d)@{backend}", "nested", "(d) per-item DataLoader",
                                      backend, "baseline", base_d, "nested.lua", seeded["token"]))
                base_e = Server(f"baseline-from-memory-{backend}",
                                release / "baseline-from-memory", base_env, args.server_core,
                                workdir)
                ms = start(base_e)
                log(f"{backend}: baseline (e) ready in {ms:.0f} ms")
                got = Client(base_e.port).gql(NESTED_QUERY)
                if got != want:
                    die(f"baseline (e) answers the nested query differently: {str(got)[:300]}")
                targets.append(Target(f"(e)@{backend}", "nested", "(e) nested from memory",
                                      backend, "baseline", base_e, "nested.lua", seeded["token"]))
            for scenario in scenarios:
                script = {"me": "me.lua", "nested": "nested.lua", "signin": "signin.lua"}[scenario]
                fields = ("requestCode", "verifyCode") if scenario == "signin" else ("me",)
                targets.append(Target(f"{scenario}@{backend}", scenario, "phone-auth", backend,
                                      "real", real, script,
                                      "" if scenario == "signin" else seeded["token"], fields))

        base_a = Server("baseline-axum", release / "baseline-axum", {}, args.server_core, workdir)
        base_b = Server("baseline-graphql", release / "baseline-graphql", {}, args.server_core,
                        workdir)
        start(base_a)
        start(base_b)
        if Client(base_b.port).gql(ME_QUERY)["me"]["inviteCode"] != "BENCH1":
            die("baseline (b) answers something else")
        targets.insert(0, Target("(a)", "me", "(a) axum fixed JSON", "-", "baseline", base_a,
                                 "me.lua"))
        targets.insert(1, Target("(b)", "me", "(b) async-graphql", "-", "baseline", base_b,
                                 "me.lua"))
        if "postgres" in backends and "signin" in scenarios:
            psql(pg_url, PGBENCH_TABLE)
            lo, hi = psql(pg_url, "SELECT min(id) || ' ' || max(id) FROM users").split()
            targets.append(Target("pgbench", "signin", "pgbench requestCode-like", "postgres",
                                  "pgbench", pg_url=pg_url, id_range=(int(lo), int(hi))))

        total = len(targets) * (args.warmup + args.runs * (args.duration + 1))
        log(f"{len(targets)} targets: {args.warmup:g} s warm-up each, then {args.runs} rounds of "
            f"{args.duration:g} s; about {total / 60:.1f} min")
        for target in targets:
            if args.warmup > 0:
                measure(args, target, args.warmup, prefix_counter, workdir)
        for round_no in range(1, args.runs + 1):
            for target in targets:
                run = measure(args, target, args.duration, prefix_counter, workdir)
                target.runs.append(run)
                log(f"round {round_no}/{args.runs} {target.key:<18} {run['rps']:>9.0f} req/s  "
                    f"p99 {run['p99_ms']:.2f} ms  errors {run['errors']}"
                    + (f"  SQL/req {run['statements_per_req']:.2f}"
                       if run.get("statements_per_req") is not None else "")
                    + (f"  graphql errors {run['graphql_errors']}"
                       if run.get("graphql_errors") else ""))
                time.sleep(1)
    finally:
        for server in reversed(servers):
            server.stop()
        pin.restore()
        if args.keep:
            log(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = {}
    for target in targets:
        results[target.key] = {
            "scenario": target.scenario, "server": target.server, "backend": target.backend,
            "kind": target.kind, "runs": target.runs, "median": median_of(target.runs),
        }
    order = ["(a)", "(b)"]
    for backend in ("sqlite", "postgres"):
        order += [f"(c)@{backend}", f"me@{backend}", f"(d)@{backend}", f"(e)@{backend}",
                  f"nested@{backend}", f"signin@{backend}"]
    order.append("pgbench")
    checks = check_targets(results, ready, probes, args.connections)
    pairs = ratio_rows(results)
    for key, (base_key, _) in pairs.items():
        m, b = results[key]["median"], results[base_key]["median"]
        results[key]["vs"] = {
            "baseline": base_key,
            "rps_ratio": m["rps"] / b["rps"] if b["rps"] else None,
            "cpu_ratio": (m["cpu_us_per_req"] / b["cpu_us_per_req"]
                          if m.get("cpu_us_per_req") and b.get("cpu_us_per_req") else None),
        }

    machine_line = (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Linux "
                    f"{info['kernel']}; wrk on core {args.load_core}, server and database on core "
                    f"{args.server_core}; load before {load_before[0]:.2f}")
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": info,
        "machine_line": machine_line,
        "git": git_state(),
        "settings": {
            "duration_s": args.duration, "runs": args.runs, "warmup_s": args.warmup,
            "connections": args.connections, "wrk_threads": 1,
            "pool_postgres": args.pool_postgres, "pool_sqlite": args.pool_sqlite,
            "sms_delay_ms": args.sms_delay_ms, "rust_log": args.rust_log,
            "load_core": args.load_core, "server_core": args.server_core,
        },
        "ready_ms": ready,
        "seed": {k: {kk: vv for kk, vv in v.items() if kk != "token"} for k, v in seeds.items()},
        "statements_per_operation_idle": probes,
        "results": results,
        "targets": checks,
        "notes": [
            "CPU µs/req: the server process's utime+stime delta ÷ requests; it excludes the "
            "database (PostgreSQL's backends); with SQLite the database runs inside the process.",
            "core µs/req: busy time of the server core (server, PostgreSQL, anything else there) "
            "÷ requests.",
            "SQL/req: delta of db_statements_total ÷ delta of the /graphql requests the server "
            "answered (http_requests_total), both read inside the run at 20 % and 90 % of its "
            "duration (background work such as SMS delivery included). CPU and core figures "
            "use the same window; for the baselines and pgbench its requests are the rate × "
            "the window's length.",
            "peak RSS: VmHWM, reset before each run (clear_refs 5), so it is the process's "
            "peak during that run; memory kept from earlier runs (the servers serve every "
            "scenario in turn) stays resident and counts. The worst run is shown.",
            "signin requests are requestCode and verifyCode (about half each); pgbench is one "
            "requestCode-like transaction (INSERT + PK SELECT).",
        ],
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print()
    print(table(results, order))
    print()
    print(f"Machine: {machine_line}")
    print(f"Start to /readyz 200: " + "; ".join(
        f"{b}: fresh {r['fresh']:.0f} ms, restart {r['restart']:.0f} ms" for b, r in ready.items()))
    for backend, pr in probes.items():
        print(f"SQL statements per operation, one at a time ({backend}): "
              + ", ".join(f"{k} {v}" for k, v in pr.items()))
    for key in ("signin@sqlite", "signin@postgres"):
        if key in results:
            m = results[key]["median"]
            print(f"{key}: {m.get('signins_per_s', 0):.0f} completed sign-ins/s "
                  f"(requestCode + verifyCode), {m.get('failed', 0)} failed answers in all runs")
    print()
    for c in checks:
        print(f"{'holds ' if c['holds'] else 'MISSES'}  {c['target']}: {c['value']} "
              f"(limit {c['limit']}; {c['detail']})")
    print(f"\nWritten: {out}")
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: servers stop and PostgreSQL gets its cores back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
