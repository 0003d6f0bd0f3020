"""Building blocks of the fault harness (faults/run): a private PostgreSQL cluster, the server
binary as a process, a recording SMS gateway, a GraphQL client, load threads, HAProxy, a
minimal graphql-transport-ws client. Python 3.11 standard library only; loopback only."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "faults" / "results"
JWT_SECRET = "faults-secret-faults-secret-faults-secret-0123456789"
WEBHOOK_SECRET = "faults-webhook-secret-faults-webhook-secret-0123"

REQUEST_CODE = "mutation($p: String!) { requestCode(phone: $p) { phone devCode } }"
VERIFY_CODE = ("mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) "
               "{ accessToken refreshToken user { id phone inviteCode } } }")
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }"
ME = "{ me { id phone inviteCode } }"
NESTED = ("{ me { invitedUsers(first: 20) { totalCount nodes { phone "
          "invitedUsers(first: 5) { totalCount } } } } }")
ACTIVATE = "mutation($c: String!) { activateInvite(inviteCode: $c) { id activatedInviteCode } }"
LOGOUT_ALL = "mutation { logoutAll }"
SUBSCRIBE = "subscription { invitedUserJoined { id phone } }"

# What every instance runs with unless a scenario says otherwise: development mode (so
# `devCode` comes back and the harness can sign in), codes sent through the webhook provider
# to the harness's recording gateway, and the per-IP limits and global breakers off (all the
# load comes from 127.0.0.1; the many-instances scenario turns them on to check them).
BASE_ENV = {
    "JWT_SECRET": JWT_SECRET,
    "SMS_PROVIDER": "webhook",
    "SMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "SMS_SEND_TIMEOUT_MS": "2000",
    "OTP_EXPOSE": "true",
    "IP_LIMITS_ON_LOOPBACK": "false",
    "SMS_GLOBAL_PER_MINUTE": "0",
    "SMS_GLOBAL_PER_HOUR": "0",
    "SMS_GLOBAL_PER_DAY": "0",
    "SMS_RANGE_PER_HOUR": "0",
    "SMS_COUNTRY_MIN_SENDS": "0",
    "WS_MAX_CONNECTIONS_PER_IP": "0",
    "RUST_LOG": "info",
}

T0 = time.monotonic()


def now() -> float:
    """Seconds since the harness started (monotonic)."""
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[faults {now():7.1f}s] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(pct(values, 50), 1), "p90": round(pct(values, 90), 1),
            "p99": round(pct(values, 99), 1), "max": round(max(values), 1)}


# ------------------------------------------------------------------------------------------
# Assertions: every check is recorded; the run fails (exit 1) when one fails.
# ------------------------------------------------------------------------------------------


class Checks:
    def __init__(self, scenario: str):
        self.scenario = scenario
        self.items: list[dict] = []

    def check(self, ok: bool, what: str, detail="") -> bool:
        self.items.append({"ok": bool(ok), "check": what, "detail": detail})
        log(f"{'PASS' if ok else 'FAIL'} {self.scenario}: {what}{' — ' + str(detail) if detail != '' else ''}")
        return ok

    @property
    def passed(self) -> bool:
        return all(i["ok"] for i in self.items)


# ------------------------------------------------------------------------------------------
# A private PostgreSQL cluster (never the machine's shared one).
# ------------------------------------------------------------------------------------------


def pg_bin() -> Path:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                  key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for d in dirs:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    sys.exit("faults: no PostgreSQL binaries under /usr/lib/postgresql/*/bin "
             "(apt-get install postgresql)")


class PrivatePg:
    """initdb into a temporary directory and serve it on 127.0.0.1:<port> (trust auth). As root
    the server runs as the `postgres` system user (PostgreSQL refuses root)."""

    def __init__(self, first_port: int = 55432):
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="phone-auth-faults-pg."))
        self.port = next(p for p in range(first_port, first_port + 100) if port_free(p))
        self.owner = "postgres" if os.geteuid() == 0 else None
        os.chmod(self.dir, 0o700)
        if self.owner:
            shutil.chown(self.dir, self.owner)
        self._run([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "--auth=trust",
                   "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync"])
        self.psql_bin = self.bin / "psql"

    def _run(self, cmd: list[str], check=True) -> subprocess.CompletedProcess:
        if self.owner:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {res.stdout}{res.stderr}")
        return res

    def start(self) -> float:
        """Starts it; returns the harness time at which it accepts connections."""
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                "-c max_connections=300 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c shared_buffers=64MB")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                   str(self.dir / "server.log"), "-w", "-t", "30", "-o", opts, "start"])
        return now()

    def stop(self, mode: str = "fast") -> float:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w",
                   "stop"], check=False)
        return now()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> list[list[str]]:
        res = subprocess.run([str(self.psql_bin), self.url(db), "-X", "-v", "ON_ERROR_STOP=1",
                              "-AtF", "\t", "-c", sql], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"psql: {res.stderr.strip()} ({sql[:80]})")
        return [line.split("\t") for line in res.stdout.splitlines() if line]

    def createdb(self, name: str) -> str:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


# ------------------------------------------------------------------------------------------
# The server.
# ------------------------------------------------------------------------------------------


def ensure_tools(names: list[str]) -> None:
    """Installs what is missing of `names` with apt (Debian's wrk and haproxy), as bench/run
    does; exits with a message when that is not possible."""
    missing = [n for n in names if not shutil.which(n) and not Path(f"/usr/sbin/{n}").exists()]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    still = [n for n in missing if not shutil.which(n) and not Path(f"/usr/sbin/{n}").exists()]
    if still:
        sys.exit(f"faults: needs {' '.join(still)} (apt-get install {' '.join(still)})")


def binary(args) -> Path:
    path = Path(args.binary).resolve() if args.binary else ROOT / "target" / "release" / "phone-auth"
    if not args.binary and not args.no_build:
        log("cargo build --release --bin phone-auth")
        subprocess.run(["cargo", "build", "--release", "--bin", "phone-auth", "-q"], cwd=ROOT,
                       check=True)
    if not path.exists():
        sys.exit(f"faults: no binary at {path}")
    return path


class Instance:
    started: list["Instance"] = []  # every instance, for the cleanup at exit

    def __init__(self, name: str, binary: Path, env: dict, workdir: Path, port: int | None = None,
                 cpus: str | None = None):
        self.cpus = cpus if cpus and shutil.which("taskset") else None
        self.name = name
        self.binary = binary
        self.env = env
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> float:
        env = {"PATH": os.environ.get("PATH", "")}
        env.update(BASE_ENV)
        env.update(self.env)
        env["LISTEN_ADDR"] = self.base
        logf = open(self.log_path, "ab")
        started = time.monotonic()
        cmd = [str(self.binary)]
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.workdir, stdout=logf,
                                     stderr=logf, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        logf.close()
        Instance.started.append(self)
        if wait:
            self.wait_ready()
        return (time.monotonic() - started) * 1000

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   + self.log_path.read_text()[-2000:])
            if http_get(self.port, "/readyz", timeout=1)[0] == 200:
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready within {timeout} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigterm(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def sigkill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def wait_exit(self, timeout: float = 60) -> int | None:
        try:
            return self.proc.wait(timeout=timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.alive():
            self.sigterm()
            if self.wait_exit(40) is None:
                self.sigkill()

    def rss_kb(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            return None
        return None

    def fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except (OSError, AttributeError):
            return None

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, IndexError):
            return None


# ------------------------------------------------------------------------------------------
# HTTP / GraphQL client (one keep-alive connection per Client; a Client per thread).
# ------------------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body, (time.monotonic() - started) * 1000
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e), (time.monotonic() - started) * 1000


class Client:
    def __init__(self, timeout: float = 15):
        self.timeout = timeout
        self.conns: dict[int, http.client.HTTPConnection] = {}

    def _conn(self, port: int) -> http.client.HTTPConnection:
        c = self.conns.get(port)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            self.conns[port] = c
        return c

    def gql(self, port: int, query: str, variables: dict | None = None,
            token: str | None = None, request_id: str | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}})
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if request_id:
            headers["x-request-id"] = request_id
        started = time.monotonic()
        rec = {"start": started - T0, "port": port}
        try:
            c = self._conn(port)
            c.request("POST", "/graphql", body=body, headers=headers)
            r = c.getresponse()
            raw = r.read()
            rec["status"] = r.status
            rec["retry_after"] = r.getheader("retry-after")
            if r.getheader("connection", "").lower() == "close":
                self.close(port)
            try:
                rec["body"] = json.loads(raw)
            except ValueError:
                rec["body"] = {"raw": raw[:200].decode("utf-8", "replace")}
        except (OSError, http.client.HTTPException) as e:
            self.close(port)
            rec["status"] = 0
            rec["transport_error"] = type(e).__name__ + ": " + str(e)
            rec["body"] = {}
        rec["ms"] = (time.monotonic() - started) * 1000
        errors = rec["body"].get("errors") if isinstance(rec["body"], dict) else None
        if errors:
            ext = errors[0].get("extensions") or {}
            rec["code"] = ext.get("code")
            rec["request_id"] = ext.get("requestId")
        return rec

    def close(self, port: int | None = None) -> None:
        for p in [port] if port is not None else list(self.conns):
            c = self.conns.pop(p, None)
            if c:
                c.close()


def data(rec: dict, field: str):
    body = rec.get("body")
    if not isinstance(body, dict) or body.get("errors"):
        return None
    return (body.get("data") or {}).get(field)


def sign_in(client: Client, port: int, phone: str) -> dict | None:
    r = client.gql(port, REQUEST_CODE, {"p": phone})
    code = (data(r, "requestCode") or {}).get("devCode")
    if not code:
        return None
    v = client.gql(port, VERIFY_CODE, {"p": phone, "c": code})
    return data(v, "verifyCode")


_phones = itertools.count(1)
_phone_lock = threading.Lock()
_phone_base = random.randint(20, 69)


def fresh_phone() -> str:
    """A new Russian mobile number (+79XX and 7 digits: ten million per run); the scenarios'
    fixed numbers start +7912, which this never makes."""
    with _phone_lock:
        n = next(_phones)
    return f"+79{_phone_base:02d}{n:07d}"


# ------------------------------------------------------------------------------------------
# Load: threads that run a workload until stopped, recording every request.
# ------------------------------------------------------------------------------------------


class SignInLoad:
    """Threads that sign in new phones (requestCode, then verifyCode with the exposed code) and,
    every third phone, only request a code (its SMS must then go out). `ports()` says where
    each request goes (a balancer, or a changing set of instances)."""

    def __init__(self, ports, threads: int = 6, rate: float = 120.0):
        self.ports = ports
        self.threads = threads
        self.interval = threads / rate if rate > 0 else 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.signed_in: list[dict] = []   # {phone, accessToken, refreshToken, user}
        self.requested: list[str] = []    # phones whose requestCode answered a code
        self.workers: list[threading.Thread] = []

    def _pick(self) -> int:
        ports = self.ports()
        return random.choice(ports)

    def _work(self) -> None:
        client = Client()
        n = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            n += 1
            phone = fresh_phone()
            r = client.gql(self._pick(), REQUEST_CODE, {"p": phone})
            r["op"] = "requestCode"
            recs = [r]
            payload = data(r, "requestCode")
            if payload:
                with self.lock:
                    self.requested.append(phone)
                if n % 3 != 0:
                    v = client.gql(self._pick(), VERIFY_CODE, {"p": phone, "c": payload["devCode"]})
                    v["op"] = "verifyCode"
                    recs.append(v)
                    tokens = data(v, "verifyCode")
                    if tokens:
                        with self.lock:
                            self.signed_in.append({"phone": phone, **tokens})
            for rec in recs:
                rec.pop("body", None) if rec.get("status") == 200 and not rec.get("code") else None
            with self.lock:
                self.records.extend(recs)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_at = time.monotonic()

    def start(self) -> "SignInLoad":
        for _ in range(self.threads):
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.workers:
            t.join(timeout=30)


class QueryLoad:
    """Threads sending one query with a token, as fast as answered (or paced)."""

    def __init__(self, ports, token: str, query: str = ME, threads: int = 2, rate: float = 0):
        self.ports, self.token, self.query = ports, token, query
        self.threads = threads
        self.interval = threads / rate if rate > 0 else 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.workers: list[threading.Thread] = []

    def _work(self) -> None:
        client = Client()
        while not self.stop_event.is_set():
            r = client.gql(random.choice(self.ports()), self.query, token=self.token)
            r["op"] = "query"
            if r.get("status") == 200 and not r.get("code"):
                r.pop("body", None)
            with self.lock:
                self.records.append(r)
            if self.interval:
                self.stop_event.wait(self.interval)

    def start(self) -> "QueryLoad":
        for _ in range(self.threads):
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.workers:
            t.join(timeout=30)


class Poller:
    """GETs a path every `every` seconds, recording (start, status, ms)."""

    def __init__(self, port_fn, path: str, every: float = 0.1, timeout: float = 5):
        self.port_fn, self.path, self.every, self.timeout = port_fn, path, every, timeout
        self.samples: list[tuple[float, int, float]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            t = now()
            status, _, ms = http_get(self.port_fn(), self.path, timeout=self.timeout)
            self.samples.append((t, status, ms))
            self.stop_event.wait(self.every)

    def start(self) -> "Poller":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


# ------------------------------------------------------------------------------------------
# The SMS gateway the webhook provider posts to: records every POST (path says which instance
# sent it), optionally slow, deduplicating by Idempotency-Key as a real gateway does.
# ------------------------------------------------------------------------------------------


class Gateway:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.posts: list[dict] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                key = self.headers.get("idempotency-key") or ""
                with gateway.lock:
                    gateway.posts.append({"t": now(), "path": self.path, "key": key,
                                          "to": body.get("to"), "text": body.get("text")})
                if gateway.delay:
                    time.sleep(gateway.delay)
                out = json.dumps({"id": key}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the sender died (SIGKILL) or gave up (its send timeout)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/sms") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def outbox_report(pg: PrivatePg, db: str, gateway: Gateway, requested: list[str],
                  checks: Checks, settle_s: float) -> dict:
    """Waits (at most `settle_s`) until no message is pending, then checks: every answered
    requestCode has its outbox row; no row is pending or undeliverable; every sent row reached
    the gateway; no phone got two different messages; repeats (same Idempotency-Key) counted."""
    deadline = time.monotonic() + settle_s
    pending = None
    while time.monotonic() < deadline:
        pending = int(pg.psql("SELECT count(*) FROM sms_outbox WHERE status = 'pending'", db)[0][0])
        if pending == 0:
            break
        time.sleep(0.5)
    rows = pg.psql("SELECT id, phone, status, attempts FROM sms_outbox WHERE kind = 'code'", db)
    by_status: dict[str, int] = {}
    phones_with_rows = set()
    sent_ids = set()
    for rid, phone, status, _attempts in rows:
        by_status[status] = by_status.get(status, 0) + 1
        phones_with_rows.add(phone)
        if status == "sent":
            sent_ids.add(rid)
    with gateway.lock:
        posts = list(gateway.posts)
    keys_by_row: dict[str, set] = {}
    posts_by_key: dict[str, int] = {}
    keys_by_phone: dict[str, set] = {}
    for p in posts:
        row = p["key"].split(".")[0]
        keys_by_row.setdefault(row, set()).add(p["key"])
        posts_by_key[p["key"]] = posts_by_key.get(p["key"], 0) + 1
        keys_by_phone.setdefault(p["to"], set()).add(p["key"])
    missing_rows = sorted(set(requested) - phones_with_rows)
    undelivered = sorted(sent_ids - set(keys_by_row))
    two_messages = {ph: len(k) for ph, k in keys_by_phone.items() if len(k) > 1}
    repeats = sum(n - 1 for n in posts_by_key.values() if n > 1)
    checks.check(not missing_rows, "every requestCode that answered has its outbox row",
                 f"{len(requested)} answered, {len(missing_rows)} without a row")
    checks.check(pending == 0, f"the outbox drains (no pending row within {settle_s:.0f} s)",
                 f"pending={pending}")
    checks.check(by_status.get("undeliverable", 0) == 0, "no message undeliverable", by_status)
    checks.check(not undelivered, "every row marked sent reached the gateway",
                 f"{len(sent_ids)} sent, {len(undelivered)} never posted")
    checks.check(not two_messages, "no phone received two different messages (no SMS twice)",
                 f"{len(keys_by_phone)} phones received; repeats of one Idempotency-Key "
                 f"(dropped by the gateway): {repeats}")
    return {"rows_by_status": by_status, "gateway_posts": len(posts),
            "distinct_messages": len(posts_by_key), "repeats_same_key": repeats,
            "requested": len(requested)}


def tokens_report(client: Client, port: int, signed_in: list[dict], checks: Checks) -> dict:
    """Every sign-in that returned tokens is whole: `me` answers its user and its refresh token
    works."""
    bad_me, bad_refresh = [], []
    for s in signed_in:
        me = data(client.gql(port, ME, token=s["accessToken"]), "me")
        if not me or me.get("phone") != s["phone"]:
            bad_me.append(s["phone"])
        if not data(client.gql(port, REFRESH, {"t": s["refreshToken"]}), "refreshToken"):
            bad_refresh.append(s["phone"])
    checks.check(not bad_me, "every verifyCode that answered tokens has its user",
                 f"{len(signed_in)} sign-ins, {len(bad_me)} missing")
    checks.check(not bad_refresh, "every verifyCode that answered tokens has its refresh token",
                 f"{len(bad_refresh)} refresh tokens refused")
    return {"signed_in": len(signed_in), "missing_user": len(bad_me),
            "refresh_refused": len(bad_refresh)}


# ------------------------------------------------------------------------------------------
# HAProxy (Debian's), in the foreground, health-checking /readyz.
# ------------------------------------------------------------------------------------------


class Haproxy:
    def __init__(self, workdir: Path, servers: list[Instance], inter_ms: int = 500):
        self.port = free_port()
        self.stats_port = free_port()
        self.cfg = workdir / "haproxy.cfg"
        lines = [
            "global", "    maxconn 4096", "",
            "defaults", "    mode http", "    timeout connect 2s", "    timeout client 30s",
            "    timeout server 30s", "    retries 3", "    option redispatch",
            "    retry-on conn-failure empty-response response-timeout", "",
            f"frontend fe", f"    bind 127.0.0.1:{self.port}", "    default_backend be", "",
            "backend be", "    balance roundrobin",
            "    option httpchk GET /readyz", "    http-check expect status 200",
            f"    default-server inter {inter_ms}ms fall 2 rise 2",
        ]
        for s in servers:
            lines.append(f"    server {s.name} {s.base} check")
        lines += ["", "listen stats", f"    bind 127.0.0.1:{self.stats_port}",
                  "    stats enable", "    stats uri /stats"]
        self.cfg.write_text("\n".join(lines) + "\n")
        self.log_path = workdir / "haproxy.log"
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "-f", str(self.cfg), "-db"], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()

    def servers_up(self) -> dict[str, str]:
        status, body, _ = http_get(self.stats_port, "/stats;csv", timeout=2)
        out = {}
        if status == 200:
            for line in body.splitlines():
                cols = line.split(",")
                if len(cols) > 17 and cols[0] == "be" and cols[1] not in ("BACKEND", "FRONTEND"):
                    out[cols[1]] = cols[17]
        return out

    def wait_all_up(self, names: list[str], timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.servers_up()
            if all(up.get(n, "").startswith("UP") for n in names):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ------------------------------------------------------------------------------------------
# A minimal graphql-transport-ws client (RFC 6455 text frames, client-masked).
# ------------------------------------------------------------------------------------------


class WsSubscription:
    def __init__(self, port: int, token: str, query: str = SUBSCRIBE, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:100].decode("utf-8", "replace"))
        self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        ack = self.recv()
        if not ack or ack.get("type") != "connection_ack":
            raise ConnectionError(f"no connection_ack: {ack}")
        self.send({"id": "1", "type": "subscribe", "payload": {"query": query}})

    def send(self, msg: dict) -> None:
        payload = json.dumps(msg).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout: float | None = None) -> dict | None:
        """The next JSON message (answers pings); None on timeout."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while True:
                b0, b1 = self._read(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                payload = self._read(n)
                if opcode == 0x8:
                    raise ConnectionError("close frame")
                if opcode == 0x9:
                    continue
                if opcode == 0x1:
                    msg = json.loads(payload)
                    if msg.get("type") == "ping":
                        self.send({"type": "pong"})
                        continue
                    return msg
        except socket.timeout:
            return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def source_commit() -> str:
    """The commit the results were measured on (with "+changes" when the tree is not clean)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def machine() -> dict:
    try:
        model = next((l.split(":", 1)[1].strip() for l in
                      Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "")
    except OSError:
        model = ""
    return {"cpus": os.cpu_count(), "cpu": model,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "shared machine: other builds and test suites may run at the same time"}


def latencies(records: list[dict], pred=lambda r: True) -> list[float]:
    return [r["ms"] for r in records if pred(r)]


__all__ = [name for name in dir() if not name.startswith("_")] + ["statistics"]
