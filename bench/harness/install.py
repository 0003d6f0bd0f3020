"""Installing what the benchmark needs (wrk, pgbench, taskset, psql) with apt."""

from __future__ import annotations

import os
import shutil
import subprocess

from .common import die, log

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

