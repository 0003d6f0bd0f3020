"""The table, the ratios to the baselines and the targets."""

from __future__ import annotations


TARGETS = {
    "me_ratio_min": 0.90,
    "nested_statements_max": 4.0,
    "nested_vs_per_item_min": 2.0,
    "signin_pgbench_ratio_min": 0.25,
    "peak_rss_mib_max": 64.0,
    "sqlite_ready_ms_max": 300.0,
}



def fmt(value, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def ratio_rows(results: dict) -> dict:
    """Each measured figure beside its baseline: key -> (baseline key, label)."""
    pairs = {"(b)": ("(a)", "(a)"), "(c)@sqlite": ("(b)", "(b)"), "(c)@postgres": ("(b)", "(b)")}
    for backend in ("sqlite", "postgres"):
        pairs[f"me@{backend}"] = (f"(c)@{backend}", "(c)")
        pairs[f"(d)@{backend}"] = (f"(c)@{backend}", "(c)")
        pairs[f"nested@{backend}"] = (f"(d)@{backend}", "(d)")
        # (e) beside (d): how much of (d)'s cost is loading rather than GraphQL (a reference).
        pairs[f"(e)@{backend}"] = (f"(d)@{backend}", "(d)")
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
            floor = results.get(f"(e)@{backend}")
            ceiling = (f"; (e), no database at all, is {floor['median']['rps'] / per_item['median']['rps']:.2f}x (d)"
                       if floor and per_item["median"]["rps"] else "")
            add(f"nested on {backend} >= 2x a default per-item DataLoader (d)", round(ratio, 3),
                TARGETS["nested_vs_per_item_min"], ratio >= TARGETS["nested_vs_per_item_min"],
                f"{nested['median']['rps']:.0f} vs {per_item['median']['rps']:.0f} req/s{ceiling}")
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


