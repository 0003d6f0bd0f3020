"""Driving load (wrk, pgbench) and measuring one target: req/s, CPU, RSS, statements."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .client import field_outcomes, graphql_requests, metric, scrape, settle
from .common import CLK_TCK, LUA, die
from .postgres import PGBENCH_SCRIPT
from .procfs import core_busy_ticks, cpu_ticks, reset_hwm, vm_hwm_kib
from .seed import wait_for_delivery
from .servers import Server


class Sample:
    """What the server side looks like at one instant of a run."""

    def __init__(self, srv: Server | None, core: int, with_metrics: bool):
        self.at = time.monotonic()
        self.busy = core_busy_ticks(core)
        self.ticks = cpu_ticks(srv.pid) if srv is not None else 0
        self.metrics = scrape(srv.port) if srv is not None and with_metrics else None


def run_load(cmd: list[str], duration: float, sample, cwd: Path | None = None):
    """Runs a load generator and samples the server twice inside the run, at 20 % and 90 % of
    its duration. Per-request CPU, statements and core time come from that interior window:
    requests in flight at the edges (ramp-up, and the ones wrk abandons when it stops, whose
    statements ran but which are never answered) would otherwise skew them."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)
    samples = []
    for frac in (0.2, 0.9):
        time.sleep(max(0.0, started + duration * frac - time.monotonic()))
        samples.append(sample())
    out, err = proc.communicate()
    if proc.returncode != 0:
        die(f"{cmd[3]} failed: {err.strip() or out.strip()}")
    return out, samples


def run_wrk(args, script: str, port: int, duration: float, extra: list[str], sample):
    cmd = ["taskset", "-c", str(args.load_core), "wrk", "-t1", f"-c{args.connections}",
           f"-d{max(1, round(duration))}s", "--timeout", "10s", "--latency", "-s",
           str(LUA / script), f"http://127.0.0.1:{port}/graphql"]
    if extra:
        cmd += ["--", *extra]
    out, samples = run_load(cmd, duration, sample)
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):]), samples
    die(f"no BENCH_JSON line in wrk's output:\n{out}")
    raise AssertionError("unreachable")


def run_pgbench(args, url: str, duration: float, workdir: Path, id_range: tuple[int, int],
                sample):
    script = workdir / "requestcode-like.sql"
    script.write_text(PGBENCH_SCRIPT)
    logdir = Path(tempfile.mkdtemp(dir=workdir, prefix="pgbench-"))
    cmd = ["taskset", "-c", str(args.load_core), "pgbench", "-n", "-M", "prepared",
           "-c", str(args.connections), "-j", "1", "-T", str(max(1, round(duration))),
           "-D", f"minid={id_range[0]}", "-D", f"maxid={id_range[1]}",
           "-f", str(script), "-l", "--log-prefix", str(logdir / "tx"), url]
    out, samples = run_load(cmd, duration, sample, cwd=logdir)
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latencies = []
    for f in logdir.iterdir():
        with open(f) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]))
    shutil.rmtree(logdir, ignore_errors=True)
    latencies.sort()

    def pct(p: float) -> int:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] if latencies else 0

    requests = int(m.group(1)) if m else len(latencies)
    rate = float(tps.group(1)) if tps else requests / duration
    return {"requests": requests, "rps": rate,
            "errors": {"failed": int(failed.group(1)) if failed else 0},
            "latency_us": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                           "max": latencies[-1] if latencies else 0}}, samples


class Target:
    """One thing to measure: a scenario against one server (or pgbench)."""

    def __init__(self, key: str, scenario: str, server: str, backend: str, kind: str,
                 srv: Server | None = None, script: str = "", token: str = "",
                 fields: tuple[str, ...] = (), pg_url: str = "", id_range=(1, 1)):
        self.key, self.scenario, self.server, self.backend = key, scenario, server, backend
        self.kind = kind  # "real" | "baseline" | "pgbench"
        self.srv, self.script, self.token, self.fields = srv, script, token, fields
        self.pg_url, self.id_range = pg_url, id_range
        self.runs: list[dict] = []


def measure(args, target: Target, duration: float, prefix_counter: list[int], workdir: Path) -> dict:
    srv = target.srv
    real = target.kind == "real"

    def sample() -> Sample:
        return Sample(srv, args.server_core, real)

    def per_request(a: Sample, b: Sample, served: float) -> dict:
        return {
            "cpu_us_per_req": ((b.ticks - a.ticks) * 1e6 / CLK_TCK / served
                               if served and srv is not None else None),
            "core_us_per_req": (b.busy - a.busy) * 1e6 / CLK_TCK / served if served else None,
        }

    if target.kind == "pgbench":
        result, (a, b) = run_pgbench(args, target.pg_url, duration, workdir, target.id_range,
                                     sample)
        return {
            "requests": result["requests"],
            "rps": result["rps"],
            "p50_ms": result["latency_us"]["p50"] / 1000,
            "p99_ms": result["latency_us"]["p99"] / 1000,
            **per_request(a, b, result["rps"] * (b.at - a.at)),
            "statements_per_req": None,
            "peak_rss_mib": None,
            "errors": result["errors"]["failed"],
        }
    assert srv is not None
    extra = [target.token] if target.token else []
    if target.scenario == "signin":
        prefix_counter[0] += 1
        if prefix_counter[0] > 999:
            die("out of phone prefixes for signin runs (at most 900 runs per database)")
        extra = [str(prefix_counter[0])]
    hwm_reset = reset_hwm(srv.pid)
    metrics0 = scrape(srv.port) if real else None
    result, (a, b) = run_wrk(args, target.script, srv.port, duration, extra, sample)
    hwm = vm_hwm_kib(srv.pid)
    requests = result["requests"]
    seconds = result["duration_us"] / 1e6
    rps = requests / seconds if seconds else 0
    if real:
        # The server's own count of answered /graphql requests inside the window.
        served = graphql_requests(b.metrics) - graphql_requests(a.metrics)
    else:
        served = rps * (b.at - a.at)
    run = {
        "requests": requests,
        "rps": rps,
        "p50_ms": result["latency_us"]["p50"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000,
        **per_request(a, b, served),
        "statements_per_req": None,
        "peak_rss_mib": hwm / 1024,
        "peak_rss_scope": "run" if hwm_reset else "process",
        "errors": sum(result["errors"].values()),
    }
    if real:
        statements = metric(b.metrics, "db_statements_total") - metric(a.metrics, "db_statements_total")
        run["window_requests"] = int(served)
        run["statements_per_req"] = statements / served if served else None
        metrics1 = settle(srv.port)
        ok1, bad1 = field_outcomes(metrics1, target.fields)
        ok0, bad0 = field_outcomes(metrics0, target.fields)
        run["graphql_errors"] = int(bad1 - bad0)
        run["graphql_ok"] = int(ok1 - ok0)
    else:
        time.sleep(0.2)
    if target.scenario == "signin":
        run["issued"] = result.get("issued", 0)
        run["signed_in"] = result.get("signed_in", 0)
        run["signins_per_s"] = run["signed_in"] / seconds if seconds else 0
        run["failed"] = result.get("failed", 0)
        wait_for_delivery(srv.port)
    return run


def median_of(runs: list[dict]) -> dict:
    out: dict = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values and not isinstance(runs[0][key], bool):
            out[key] = statistics.median(values)
        else:
            out[key] = runs[0][key]
    # Memory: the peak of any run, not the median.
    rss = [r["peak_rss_mib"] for r in runs if r.get("peak_rss_mib") is not None]
    if rss:
        out["peak_rss_mib"] = max(rss)
    for key in ("errors", "graphql_errors", "failed"):
        if key in runs[0]:
            out[key] = sum(r.get(key) or 0 for r in runs)
    return out


