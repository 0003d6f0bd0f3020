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
   DataLoader per item (no look-ahead), all pinned to core 1 together with
   PostgreSQL (its postmaster and backends, restored to all cores at the end); pgbench runs a
   requestCode-like transaction (one INSERT + one PK SELECT, prepared) as the write ceiling;
5. warm-up, then several interleaved rounds; medians; a table in the terminal and
   bench/results/latest.json.

Run `bench/run --help` for the options.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# A fixed secret, so access tokens survive the restart after seeding.
JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123456789"

ME_QUERY = "{ me { id phone inviteCode } }"
NESTED_QUERY = (
    "{ me { invitedUsers(first: 100) { totalCount nodes { phone "
    "invitedUsers(first: 5) { totalCount } } } } }"
)
REQUEST_CODE = "mutation($p: String!) { requestCode(phone: $p) { phone devCode } }"
VERIFY_CODE = (
    "mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) "
    "{ accessToken user { id inviteCode } } }"
)
ACTIVATE = "mutation($c: String!) { activateInvite(inviteCode: $c) { id } }"

# Phones (national part after +7, 10 digits): seeds 900xxxxxxx, probes 901xxxxxxx, signin runs
# 9<prefix 100-999><6 digits>. The three ranges never meet.
SEED_INVITEES = 1000
SEED_SECOND_LEVEL_PARENTS = 100
SEED_SECOND_LEVEL_EACH = 3

TARGETS = {
    "me_ratio_min": 0.90,
    "nested_statements_max": 4.0,
    "nested_vs_per_item_min": 2.0,
    "signin_pgbench_ratio_min": 0.25,
    "peak_rss_mib_max": 64.0,
    "sqlite_ready_ms_max": 300.0,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg: str) -> None:
    raise SystemExit(f"bench: {msg}")


# ------------------------------------------------------------------------------------------
# Tools and machine
# ------------------------------------------------------------------------------------------


def ensure_tools(install: bool) -> None:
    wanted = {"wrk": "wrk", "pgbench": "postgresql-contrib", "taskset": "util-linux",
              "psql": "postgresql-client"}
    missing = [tool for tool in wanted if shutil.which(tool) is None]
    if not missing:
        return
    packages = sorted({wanted[tool] for tool in missing})
    if not install:
        die(f"missing {', '.join(missing)}; install {' '.join(packages)} (or drop --no-install)")
    if shutil.which("apt-get") is None:
        die(f"missing {', '.join(missing)} and no apt-get to install {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {' '.join(packages)} with apt-get (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", *packages],
                   check=True, env=env)
    still = [tool for tool in missing if shutil.which(tool) is None]
    if still:
        die(f"still missing after apt-get: {', '.join(still)}")


def machine() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
    }


def wait_quiet(max_wait: float, threshold: float) -> list[float]:
    """Waits (up to max_wait seconds) for the 1-minute load average to drop below threshold."""
    deadline = time.monotonic() + max_wait
    while True:
        load = list(os.getloadavg())
        if load[0] < threshold or time.monotonic() >= deadline:
            if load[0] >= threshold:
                log(f"WARNING: the machine is busy (load {load[0]:.2f}): figures will be noisy")
            return load
        log(f"load {load[0]:.2f} >= {threshold}: waiting for the machine to quieten")
        time.sleep(15)


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "migration",
                "Cargo.toml", "Cargo.lock")
    return {"commit": git("rev-parse", "HEAD"), "server_sources_dirty": bool(dirty)}


def build(target_dir: Path) -> None:
    log("cargo build --release -p phone-auth -p bench")
    subprocess.run(["cargo", "build", "--release", "-p", "phone-auth", "-p", "bench"],
                   cwd=ROOT, check=True)
    for name in ("phone-auth", "baseline-axum", "baseline-graphql", "baseline-db",
                 "baseline-dataloader"):
        if not (target_dir / "release" / name).exists():
            die(f"{target_dir / 'release' / name} was not built")


# ------------------------------------------------------------------------------------------
# /proc readings
# ------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_hwm(pid: int) -> bool:
    """Resets the process's peak RSS (Linux >= 4.0), so VmHWM then covers one run only."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def core_busy_ticks(core: int) -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:9]]
                # user nice system idle iowait irq softirq steal
                return sum(v) - v[3] - v[4]
    return 0


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                out.append(int(entry))
        except OSError:
            continue
    return out


# ------------------------------------------------------------------------------------------
# HTTP and metrics
# ------------------------------------------------------------------------------------------


class GraphQLError(Exception):
    pass


class Client:
    """One keep-alive connection to a server on 127.0.0.1."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        return self._request("GET", path, None, {})

    def gql(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        status, raw = self._request("POST", "/graphql", body, headers)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise GraphQLError(f"HTTP {status}: {raw[:200]!r}") from None
        if doc.get("errors"):
            raise GraphQLError(json.dumps(doc["errors"])[:300])
        return doc["data"]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict, float]]:
    client = Client(port)
    try:
        status, raw = client.get("/metrics")
    finally:
        client.close()
    if status != 200:
        die(f"/metrics answered {status}")
    samples = []
    for line in raw.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        if m:
            labels = dict(LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric(samples: list, name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples
               if n == name and all(ls.get(k) == want for k, want in labels.items()))


def graphql_requests(samples: list) -> float:
    return metric(samples, "http_requests_total", route="/graphql")


def settle(port: int, timeout: float = 5) -> list:
    """Waits until the server's count of answered /graphql requests stops moving; returns the
    last scrape."""
    deadline = time.monotonic() + timeout
    samples = scrape(port)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        again = scrape(port)
        if graphql_requests(again) == graphql_requests(samples):
            return again
        samples = again
    return samples


def field_outcomes(samples: list, fields: tuple[str, ...]) -> tuple[float, float]:
    ok = sum(metric(samples, "graphql_fields_total", field=f, outcome="ok") for f in fields)
    total = sum(metric(samples, "graphql_fields_total", field=f) for f in fields)
    return ok, total - ok


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, binary: Path, env: dict, core: int, workdir: Path):
        self.name = name
        self.binary = binary
        self.env = env
        self.core = core
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Starts the process (pinned) and returns the ms from spawn to `/readyz` 200."""
        env = dict(os.environ)
        env.update(self.env)
        env["LISTEN_ADDR"] = f"127.0.0.1:{self.port}"
        logf = open(self.log_path, "ab")
        started = time.perf_counter()
        # taskset execs the server: the pid is the server's own.
        self.proc = subprocess.Popen(["taskset", "-c", str(self.core), str(self.binary)],
                                     env=env, cwd=self.workdir, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        deadline = started + 60
        while True:
            if self.proc.poll() is not None:
                die(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            if time.perf_counter() > deadline:
                die(f"{self.name} was not ready within 60 s; see {self.log_path}")
            time.sleep(0.001)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------


def psql(url: str, sql: str) -> str:
    res = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                         capture_output=True, text=True)
    if res.returncode != 0:
        die(f"psql failed ({sql[:60]}...): {res.stderr.strip()}")
    return res.stdout.strip()


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class PgPin:
    """Pins the local PostgreSQL (postmaster and every backend; new backends inherit it) to one
    core, and puts back the original affinity at the end."""

    def __init__(self, admin_url: str, core: int):
        self.admin_url = admin_url
        self.core = core
        self.postmaster: int | None = None
        self.original: str | None = None

    def pin(self) -> None:
        data_dir = psql(self.admin_url, "show data_directory")
        try:
            with open(Path(data_dir) / "postmaster.pid") as f:
                pid = int(f.readline())
            os.kill(pid, 0)
        except (OSError, ValueError):
            log("WARNING: cannot find the PostgreSQL postmaster on this machine: not pinned")
            return
        self.postmaster = pid
        self.original = ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
        self._set(str(self.core))
        log(f"PostgreSQL (postmaster {pid} and its backends) pinned to core {self.core}")

    def restore(self) -> None:
        if self.postmaster is None:
            return
        self._set(self.original or f"0-{(os.cpu_count() or 1) - 1}")
        log(f"PostgreSQL affinity restored to cores {self.original}")
        self.postmaster = None

    def _set(self, cores: str) -> None:
        assert self.postmaster is not None
        for pid in [self.postmaster, *children_of(self.postmaster)]:
            subprocess.run(["taskset", "-a", "-p", "-c", cores, str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PGBENCH_SCRIPT = """\
-- requestCode-like: one INSERT (the code's upsert) and one primary-key SELECT, in one transaction.
\\set n random(1, 1000000000)
\\set uid random(:minid, :maxid)
BEGIN;
INSERT INTO bench_otp_codes (phone, code_hash, attempts, created_at, expires_at, resend_available_at)
  VALUES ('+7' || :n, md5(:n::text), 0, now(), now() + interval '5 minutes', now() + interval '1 minute')
  ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0,
    created_at = excluded.created_at, expires_at = excluded.expires_at,
    resend_available_at = excluded.resend_available_at;
SELECT id, phone, invite_code, invited_by_id, activated_invite_code, activated_at, created_at
  FROM users WHERE id = :uid;
END;
"""

PGBENCH_TABLE = """
DROP TABLE IF EXISTS bench_otp_codes;
CREATE TABLE bench_otp_codes (
  id BIGSERIAL PRIMARY KEY,
  phone TEXT NOT NULL UNIQUE,
  code_hash TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  resend_available_at TIMESTAMPTZ NOT NULL,
  consumed_at TIMESTAMPTZ
);
"""


# ------------------------------------------------------------------------------------------
# Seeding and probes (through the public API)
# ------------------------------------------------------------------------------------------


def seed_phone(i: int) -> str:
    return f"+7900{i:07d}"


def retrying(fn, *args, tries: int = 5):
    for attempt in range(tries):
        try:
            return fn(*args)
        except GraphQLError as err:
            # Only transient server errors (e.g. SQLite busy under the parallel seeding) retry.
            if "INTERNAL_SERVER_ERROR" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def sign_in(client: Client, phone: str) -> dict:
    code = retrying(lambda: client.gql(REQUEST_CODE, {"p": phone})["requestCode"]["devCode"])
    if not code:
        die("requestCode returned no devCode: the server must run with OTP_EXPOSE=true")
    return retrying(lambda: client.gql(VERIFY_CODE, {"p": phone, "c": code})["verifyCode"])


def seed(port: int, workers: int) -> dict:
    """One root user with 1,000 invitees; 3 invitees under each of the first 100 of those."""
    local = threading.local()

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(port)
        return local.client

    started = time.perf_counter()
    root = sign_in(Client(port), seed_phone(0))
    root_code = root["user"]["inviteCode"]

    def invitee(i: int, inviter_code: str) -> None:
        c = client()
        signed = sign_in(c, seed_phone(i))
        retrying(lambda: c.gql(ACTIVATE, {"c": inviter_code}, signed["accessToken"]))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: invitee(i, root_code), range(1, SEED_INVITEES + 1)))
        # The first 100 in activation order, as the nested query will list them.
        page = Client(port).gql("{ me { invitedUsers(first: 100) { nodes { inviteCode } } } }",
                                token=root["accessToken"])
        codes = [n["inviteCode"] for n in page["me"]["invitedUsers"]["nodes"]]
        jobs = [(SEED_INVITEES + 1 + k * SEED_SECOND_LEVEL_EACH + j, code)
                for k, code in enumerate(codes[:SEED_SECOND_LEVEL_PARENTS])
                for j in range(SEED_SECOND_LEVEL_EACH)]
        list(pool.map(lambda job: invitee(*job), jobs))
    return {
        "token": root["accessToken"],
        "user_id": int(root["user"]["id"]),
        "users": 1 + SEED_INVITEES + len(jobs),
        "seconds": round(time.perf_counter() - started, 1),
    }


def check_nested(client: Client, token: str) -> None:
    data = client.gql(NESTED_QUERY, token=token)["me"]["invitedUsers"]
    counts = [n["invitedUsers"]["totalCount"] for n in data["nodes"]]
    if data["totalCount"] != SEED_INVITEES or len(counts) != 100 or set(counts) != {3}:
        die(f"the seeded data is not what the nested scenario expects: totalCount "
            f"{data['totalCount']}, {len(counts)} nodes, child counts {sorted(set(counts))}")


def probe(port: int, token: str, repeat: int = 5) -> dict:
    """SQL statements of one operation at a time on the otherwise idle server (the fewest of
    `repeat` tries, since a background poll, such as the SMS outbox's every second, may land
    inside one)."""
    client = Client(port)

    def statements(fn) -> int:
        before = metric(scrape(port), "db_statements_total")
        fn()
        return int(metric(scrape(port), "db_statements_total") - before)

    out: dict[str, list[int]] = {"me": [], "nested": [], "requestCode+delivery": [],
                                 "verifyCode": []}
    for i in range(repeat):
        out["me"].append(statements(lambda: client.gql(ME_QUERY, token=token)))
        out["nested"].append(statements(lambda: client.gql(NESTED_QUERY, token=token)))
        phone = f"+7901{i:07d}"
        issued: dict = {}

        def request_code() -> None:
            issued["code"] = client.gql(REQUEST_CODE, {"p": phone})["requestCode"]["devCode"]
            # The SMS goes out off the request path, and may start before the answer arrives:
            # wait for it, and count the two together.
            time.sleep(0.3)

        out["requestCode+delivery"].append(statements(request_code))
        out["verifyCode"].append(
            statements(lambda: client.gql(VERIFY_CODE, {"p": phone, "c": issued["code"]})))
    client.close()
    return {name: min(values) for name, values in out.items()}


def concurrent_statements(port: int, token: str, query: str, concurrency: int,
                          rounds: int) -> float:
    """SQL statements per request with `concurrency` requests at once: each round sends that
    many together and waits for all of them, so every request counted has finished and no
    statement of an unfinished one is counted (unlike a window of a wrk run)."""
    clients = [Client(port) for _ in range(concurrency)]
    go = threading.Barrier(concurrency + 1)
    done = threading.Barrier(concurrency + 1)
    failures: list[str] = []

    def worker(client: Client) -> None:
        for _ in range(rounds):
            go.wait()
            try:
                client.gql(query, token=token)
            except (GraphQLError, OSError) as err:
                failures.append(str(err))
            done.wait()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    per_round = []
    for _ in range(rounds):
        before = metric(scrape(port), "db_statements_total")
        go.wait()
        done.wait()
        per_round.append((metric(scrape(port), "db_statements_total") - before) / concurrency)
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    if failures:
        die(f"{len(failures)} requests failed in the concurrent probe: {failures[0]}")
    # The median round: a background statement (the SMS outbox polls every second) that lands
    # in one round does not count against the request.
    return statistics.median(per_round)


def wait_for_delivery(port: int, timeout: float = 30) -> None:
    """After a signin run: lets queued SMS deliveries finish so they do not run into the next
    measurement."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        s = scrape(port)
        issued = metric(s, "sms_codes_issued_total")
        settled = (metric(s, "sms_codes_delivered_total") + metric(s, "sms_codes_undeliverable_total"))
        if settled >= issued or (last is not None and settled == last):
            return
        last = settled
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def fmt(value, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def ratio_rows(results: dict) -> dict:
    """Each measured figure beside its baseline: key -> (baseline key, label)."""
    pairs = {"(b)": ("(a)", "(a)"), "(c)@sqlite": ("(b)", "(b)"), "(c)@postgres": ("(b)", "(b)")}
    for backend in ("sqlite", "postgres"):
        pairs[f"me@{backend}"] = (f"(c)@{backend}", "(c)")
        pairs[f"(d)@{backend}"] = (f"(c)@{backend}", "(c)")
        pairs[f"nested@{backend}"] = (f"(d)@{backend}", "(d)")
    pairs["signin@postgres"] = ("pgbench", "pgbench")
    return {k: v for k, v in pairs.items() if k in results and v[0] in results}


def table(results: dict, order: list[str]) -> str:
    header = ["scenario", "server", "db", "req/s", "vs base", "p50 ms", "p99 ms", "CPU µs/req",
              "vs base", "core µs/req", "SQL/req", "peak RSS MiB"]
    rows = [header]
    pairs = ratio_rows(results)
    for key in order:
        if key not in results:
            continue
        r = results[key]
        m = r["median"]
        base_key, label = pairs.get(key, (None, ""))
        base = results[base_key]["median"] if base_key else None
        rps_ratio = cpu_ratio = ""
        if base:
            rps_ratio = f"{m['rps'] / base['rps']:.2f}× {label}" if base["rps"] else ""
            if m.get("cpu_us_per_req") and base.get("cpu_us_per_req"):
                cpu_ratio = f"{m['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}× {label}"
        rows.append([
            r["scenario"], r["server"], r["backend"], fmt(m["rps"]), rps_ratio,
            fmt(m["p50_ms"], ".2f"), fmt(m["p99_ms"], ".2f"), fmt(m["cpu_us_per_req"], ".0f"),
            cpu_ratio, fmt(m["core_us_per_req"], ".0f"), fmt(m["statements_per_req"], ".2f"),
            fmt(m["peak_rss_mib"], ".1f"),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[i]) if i < 3 else c.rjust(widths[i])
                                       for i, c in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) if i < 3 else "-" * (w + 1) + ":"
                                        for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def check_targets(results: dict, ready: dict, probes: dict, connections: int) -> list[dict]:
    checks = []

    def add(name: str, value, limit: float, holds: bool, detail: str) -> None:
        checks.append({"target": name, "value": value, "limit": limit, "holds": holds,
                       "detail": detail})

    for backend in ("postgres", "sqlite"):
        me, base = results.get(f"me@{backend}"), results.get(f"(c)@{backend}")
        if me and base:
            ratio = me["median"]["rps"] / base["median"]["rps"]
            add(f"me on {backend} >= 90% of (c) in req/s", round(ratio, 3),
                TARGETS["me_ratio_min"], ratio >= TARGETS["me_ratio_min"],
                f"{me['median']['rps']:.0f} vs {base['median']['rps']:.0f} req/s")
            cpu, base_cpu = me["median"].get("cpu_us_per_req"), base["median"].get("cpu_us_per_req")
            if cpu and base_cpu:
                # (c)'s CPU per request over the server's: 0.90 means the server spends 1/0.9 of it.
                ratio = base_cpu / cpu
                add(f"me on {backend} >= 90% of (c) in CPU per request", round(ratio, 3),
                    TARGETS["me_ratio_min"], ratio >= TARGETS["me_ratio_min"],
                    f"{cpu:.0f} vs {base_cpu:.0f} µs per request")
        nested, per_item = results.get(f"nested@{backend}"), results.get(f"(d)@{backend}")
        if nested and per_item:
            ratio = nested["median"]["rps"] / per_item["median"]["rps"]
            add(f"nested on {backend} >= 2x a default per-item DataLoader (d)", round(ratio, 3),
                TARGETS["nested_vs_per_item_min"], ratio >= TARGETS["nested_vs_per_item_min"],
                f"{nested['median']['rps']:.0f} vs {per_item['median']['rps']:.0f} req/s")
        exact = probes.get(backend, {}).get(f"nested_x{connections}")
        if exact is not None:
            nested = results.get(f"nested@{backend}")
            window = (f"; inside the wrk runs: {nested['median']['statements_per_req']:.2f} ± edge "
                      f"noise" if nested else "")
            add(f"nested on {backend}: SQL statements per request at {connections} concurrent "
                f"requests <= 4", exact, TARGETS["nested_statements_max"],
                exact <= TARGETS["nested_statements_max"],
                f"{connections} at once, 10 rounds, every request finished{window}")
    signin, pgb = results.get("signin@postgres"), results.get("pgbench")
    if signin and pgb:
        ratio = signin["median"]["rps"] / pgb["median"]["rps"]
        add("signin on postgres >= 25% of pgbench (requests/s vs transactions/s)",
            round(ratio, 3), TARGETS["signin_pgbench_ratio_min"],
            ratio >= TARGETS["signin_pgbench_ratio_min"],
            f"{signin['median']['rps']:.0f} req/s ({signin['median'].get('signins_per_s', 0):.0f} "
            f"sign-ins/s) vs {pgb['median']['rps']:.0f} tps")
    rss = [(k, r["median"]["peak_rss_mib"]) for k, r in results.items()
           if r["kind"] == "real" and r["median"].get("peak_rss_mib") is not None]
    if rss:
        worst = max(rss, key=lambda kv: kv[1])
        add("peak RSS of the server under any scenario <= 64 MiB", round(worst[1], 1),
            TARGETS["peak_rss_mib_max"], worst[1] <= TARGETS["peak_rss_mib_max"],
            f"worst: {worst[0]}")
    if "sqlite" in ready:
        worst = max(ready["sqlite"].values())
        add("SQLite start to /readyz 200 <= 300 ms", round(worst, 1),
            TARGETS["sqlite_ready_ms_max"], worst <= TARGETS["sqlite_ready_ms_max"],
            ", ".join(f"{k} {v:.0f} ms" for k, v in ready["sqlite"].items()))
    return checks


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


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
        order += [f"(c)@{backend}", f"me@{backend}", f"(d)@{backend}", f"nested@{backend}",
                  f"signin@{backend}"]
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
