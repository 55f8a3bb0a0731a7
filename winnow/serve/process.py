"""Start ``winnow serve`` as a child process on a free loopback port, and stop it by its process id.

For tests and benchmarks: ``with ServerProcess(data_dir, ["--rerank-model", path]) as server: server.url``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


class ServerProcess:
    def __init__(
        self,
        data: Path | str,
        args: Sequence[str] = (),
        *,
        log_path: Path | str | None = None,
        start_timeout: float = 300.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = Path(data)
        self.args = list(args)
        self.log_path = Path(log_path) if log_path else None
        self.start_timeout = start_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        port_dir = Path(tempfile.mkdtemp(prefix="winnow-port-"))
        port_file = port_dir / "port"
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("HF_HUB_OFFLINE", "1")
        cmd = [sys.executable, "-m", "winnow", "serve", "--host", "127.0.0.1", "--port", "0",
               "--port-file", str(port_file), "--data", str(self.data), *self.args]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        deadline = time.monotonic() + self.start_timeout
        while not port_file.is_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"winnow serve exited with {self.proc.returncode} before serving: {self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"winnow serve did not start within {self.start_timeout:.0f} s: {self._tail()}")
            time.sleep(0.1)
        self.port = int(port_file.read_text())
        port_file.unlink()
        port_dir.rmdir()
        return self

    def _tail(self) -> str:
        if self.log_path and self.log_path.is_file():
            return self.log_path.read_text(errors="replace")[-3000:]
        return "(no log)"

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it has not exited within ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
