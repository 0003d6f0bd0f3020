"""PostgreSQL for the benchmark: databases, pinning its processes, the pgbench script."""

from __future__ import annotations

import os
import subprocess
import urllib.parse
from pathlib import Path

from .common import die, log
from .procfs import children_of


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


