"""Process-level runtime settings: threads.

On a small CPU, numpy's OpenBLAS and torch both spawning a thread per core slows a single query
several times over (measured: 105 ms instead of 22 ms). Query paths hold BLAS to one thread.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and cgroup-limited containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def limit_blas_threads(n: int = 1) -> Iterator[None]:
    """Hold numpy's BLAS to ``n`` threads inside the block (no-op if threadpoolctl is missing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield
