"""A small GraphQL-over-HTTP client and the server's /metrics scraped."""

from __future__ import annotations

import http.client
import json
import re
import time

from .common import die


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


