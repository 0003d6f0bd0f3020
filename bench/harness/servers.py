"""Starting and stopping the real server and the baselines, pinned to their core."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .common import die


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


