"""The machine: what it is, whether it is quiet, the commit measured, the release build."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from .common import ROOT, die, log




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
                 "baseline-dataloader", "baseline-from-memory"):
        if not (target_dir / "release" / name).exists():
            die(f"{target_dir / 'release' / name} was not built")


