"""Seeding through the public API and probes of one request at a time (statement counts)."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .client import Client, GraphQLError, metric, scrape
from .common import ACTIVATE, ME_QUERY, NESTED_QUERY, REQUEST_CODE, SEED_INVITEES, SEED_SECOND_LEVEL_EACH, SEED_SECOND_LEVEL_PARENTS, VERIFY_CODE, die


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


