"""Connecting to a Ray cluster, or starting a local one, for the duration of a job.

``address`` is what ``winnow ... --ray [ADDRESS]`` was given: ``"local"`` (or None) starts a Ray instance
in this machine on the loopback address only, with no dashboard, and shuts it down afterwards; anything
else (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``) is handed to ``ray.init(address=...)`` and the
cluster is left running. Where Ray is already initialized in this process, that cluster is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

from winnow.errors import ClusterError, InvalidArgumentError, MissingDependencyError

log = logging.getLogger(__name__)

LOCAL = "local"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: node addresses resolve to 127.0.0.1


@dataclass(frozen=True)
class RayCluster:
    """The cluster a job runs on: its address as given, the CPUs it offers, and whether winnow started it."""

    address: str
    cpus: int
    started_here: bool


def import_ray():
    """``ray`` and ``ray.data``, or a typed error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data ships with ray[data]
    except ImportError as exc:
        raise MissingDependencyError(
            f"running on Ray needs ray[data] ({exc.name or exc} is missing): pip install 'winnow[ray]'"
        ) from None
    return ray


def connect(address: str | None = LOCAL, *, num_cpus: int | None = None) -> RayCluster:
    """Join the cluster at ``address`` (see the module's doc); ``num_cpus`` caps a local one."""
    if address is not None and not isinstance(address, str):
        raise InvalidArgumentError(f"a Ray address must be a string such as 'local', 'auto' or 'HOST:6379', got {address!r}")
    if num_cpus is not None and num_cpus < 1:
        raise InvalidArgumentError(f"num_cpus must be >= 1 (or None for every core), got {num_cpus}")
    address = address or LOCAL
    if address == LOCAL and "ray" not in sys.modules:
        # Ray on Linux swaps 127.0.0.1 for the machine's network address ("remotely reachable"); a local
        # instance stays on the loopback address only with this switch, read when ray is first imported.
        os.environ.setdefault(LOOPBACK_SWITCH, "0")
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if address == LOCAL:
                _start_local(ray, num_cpus)
                started = True
            else:
                check_reachable(address)
                ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(
                f"could not {'start a local Ray instance' if address == LOCAL else f'reach the Ray cluster at {address!r}'}: "
                f"{exc}. Start one with `ray start --head`, pass its address (HOST:6379 or ray://HOST:10001), "
                f"or pass --ray alone for a local one"
            ) from exc
    if started:
        ip = ray.util.get_node_ip_address()
        if ip not in ("127.0.0.1", "::1"):
            log.warning("the local Ray instance listens on %s, not only on the loopback address: ray was imported "
                        "before winnow started it (set %s=0 before importing ray to keep it on 127.0.0.1)", ip, LOOPBACK_SWITCH)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise ClusterError(f"the Ray cluster at {address!r} offers no CPU to run workers on")
    log.info("Ray cluster %s: %d CPUs (%s)", address, cpus, "started here" if started else "joined")
    return RayCluster(address, cpus, started)


def _start_local(ray, num_cpus: int | None, *, attempts: int = 2) -> None:
    """``ray.init`` of a loopback-only local instance. Ray gives its raylet 30 s to register and then raises a
    bare ``Exception`` ("timed out during startup"), which a busy machine sometimes hits; that one is retried
    once after a clean shutdown, and then reported as a :class:`ClusterError`."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     logging_level=logging.WARNING)
            return
        except Exception as exc:  # noqa: BLE001 - ray raises a bare Exception for this one
            if "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
            if attempt == attempts:
                raise ClusterError(f"a local Ray instance did not start ({exc}); is the machine out of memory or processes?") from exc
            log.warning("the local Ray instance did not start in time (%s); trying once more", exc)


def check_reachable(address: str, *, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, where ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts no connection
    (``ray.init`` waits a long while for a cluster that is not there). ``auto`` is left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form Ray knows and this check does not
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address!r} ({exc.strerror or exc}). Start one with `ray start --head` and pass "
            f"its address (HOST:6379, or ray://HOST:10001 for Ray Client), or pass --ray alone for a local one"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None = LOCAL, *, num_cpus: int | None = None) -> Iterator[RayCluster]:
    """:func:`connect` for the block; a local instance started here is shut down after it."""
    cluster = connect(address, num_cpus=num_cpus)
    try:
        yield cluster
    finally:
        if cluster.started_here:
            import ray

            ray.shutdown()


def map_with_actors(ds, worker_cls: type, constructor_kwargs: dict, *, actors: int, cpus_per_actor: int,
                    batch_rows: int, batch_format: str, retries: int):
    """``ds.map_batches`` on a pool of ``actors`` instances of ``worker_cls`` (each built once with
    ``constructor_kwargs``, holding its model), ``cpus_per_actor`` CPUs each, with bounded fault tolerance:
    a dead actor is restarted and its unfinished batch run again at most ``retries`` times (Ray Data's
    default is forever, which would hide a batch that kills every worker)."""
    import ray.data
    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        # Ray 2.60 takes max_restarts / max_task_retries only as extra remote arguments, which it marks
        # deprecated (removal announced for 2.64, no named parameter yet): revisit when the pin moves.
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated", category=RayDeprecationWarning)
        return ds.map_batches(
            worker_cls,
            fn_constructor_kwargs=constructor_kwargs,
            batch_size=batch_rows,
            batch_format=batch_format,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            max_restarts=retries,
            max_task_retries=retries,
        )


def quiet_ray_data(*, progress: bool) -> None:
    """Ray Data's own progress bars and per-dataset log lines on or off (winnow shows its own bar)."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)


def portable_name(resolved) -> str:
    """The name a worker resolves a model by on its own machine: a local folder by its path (the same path
    must exist on every node), anything else (a hub id, a bundled or shipped model) by its name."""
    return str(resolved.path) if resolved.source == "local" else resolved.name
