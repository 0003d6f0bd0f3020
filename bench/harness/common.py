"""Constants, queries and logging shared by the benchmark modules."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is bench/harness/common.py)
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



def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg: str) -> None:
    raise SystemExit(f"bench: {msg}")

