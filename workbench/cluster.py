"""The Dask cluster: a local one laid out from the placement plan, or an existing scheduler.

Local workers are tuned for small torch models (measured on 2 cores, docs/engine.md):
the nanny's ``MALLOC_TRIM_THRESHOLD_`` is removed (any glibc ``MALLOC_*`` variable
disables the dynamic mmap threshold and costs ~50% per step), thread variables are set
to the plan's threads, and torch is preloaded so the first segment does not pay for it.
The scheduler and workers listen on 127.0.0.1 unless told otherwise.

A local cluster outlives its run by a few minutes, parked for the next run of this process
with the same worker layout (the panel's second run, a batch of runs): starting one costs
seconds of processes and imports that the training of small models does not. One cluster at
most is parked; it is closed when it idles :data:`IDLE_CLOSE_S`, when a run with another
layout parks its own, or at interpreter exit. ``WORKBENCH_REUSE_CLUSTER=0`` turns this off.

A local scheduler serves Dask's dashboard only when asked (``WORKBENCH_DASHBOARD=1``, which
``workbench run --dashboard`` sets): starting it imports bokeh, half a second of the
driver's CPU at every cold start, for pages the workbench's own panel does not need.

The local nannies live in fresh interpreters (``python -m workbench._host``, one for the
workers that share an environment: see :func:`_hosts`), not started through
multiprocessing's spawn: spawn re-imports the caller's ``__main__`` script in every child,
so a script calling :func:`workbench.start_run` at top level (no ``if __name__ ==
"__main__":`` guard) would start a cluster inside each worker ("Nanny failed to start").
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .resources import GPU, Inventory, WorkerSpec

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClusterHandle", "start_local_cluster", "warm_up", "connect"]

PRELOAD = "workbench._preload"  # in each worker
IDLE_CLOSE_S = 300.0  # a parked cluster unused this long is closed
# Two workers importing torch on a 2-core machine at load 20-30 took over 120 s (the
# previous limit): a slow start is not a failure to start.
TICK = "500ms"  # Dask's event-loop tick in every process of a local cluster (default 20 ms): see _nanny_environ
WORKER_START_TIMEOUT_S = 240.0  # inside the detached driver's own start limit (_driver.START_TIMEOUT_S)


@dataclasses.dataclass
class ClusterHandle:
    client: Any  # distributed.Client
    cluster: Any | None  # the SpecCluster we own, or None for an external scheduler
    workers: dict[str, WorkerSpec]  # worker address -> spec
    inventory: Inventory | None = None  # an external cluster's CPUs and GPUs (placement reads it)
    owns_client: bool = True  # False for a Client the caller passed in: theirs to close
    reuse_key: tuple | None = None  # a local cluster's layout: parked on close for the next run with it
    dashboard: bool = True  # a local scheduler's HTTP server serves Dask's dashboard (an external one: its own)

    @property
    def dashboard_link(self) -> str | None:
        if not self.dashboard:  # its HTTP server serves Dask's API and health checks only
            return None
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing): not an error
            return None

    @property
    def external(self) -> bool:
        return self.cluster is None

    def close(self) -> None:
        """End this run's use of the cluster: park it for a later run (a local cluster in
        good health), else close our client and, if we started it, the cluster."""
        if self.reuse_key is not None and os.environ.get("WORKBENCH_REUSE_CLUSTER", "1") != "0" \
                and self._healthy() and _park(self):
            return
        self.close_now()

    def _healthy(self) -> bool:
        """Every worker of the layout is connected (a nanny restarts one that died)."""
        try:
            if self.client.status != "running":
                return False
            info = self.client.scheduler_info(n_workers=-1)["workers"]
            names = sorted(str(w.get("name")) for w in info.values())
            return names == sorted(spec.name for spec in self.workers.values())
        except Exception:
            return False

    def close_now(self) -> None:
        if self.owns_client:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)


def _worker_env(spec: WorkerSpec) -> dict[str, str]:
    env = {name: str(spec.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    # The physical GPU (UUID where known), never the logical index: with the user's
    # CUDA_VISIBLE_DEVICES=2,3, logical GPU 0 is physical GPU 2.
    env["CUDA_VISIBLE_DEVICES"] = "" if spec.gpu_index is None else (spec.gpu_id or str(spec.gpu_index))
    return env


def _launch_host(env: dict[str, str]) -> Any:
    """Start a host process (``workbench/_host.py``): it imports torch while the scheduler
    starts, and waits for its nannies' spec on stdin."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "workbench._host"], stdin=subprocess.PIPE, env=env)


def _kill_host(process: Any, wait: bool = True) -> None:
    """Kill a host process and its workers (as Dask's ``SubprocessWorker.close``: children first)."""
    import psutil

    if process.poll() is None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        process.kill()
    if wait:
        process.wait()


def _host_process_class():
    from distributed.deploy.spec import ProcessInterface

    class HostProcess(ProcessInterface):
        """A launched host process (:func:`_launch_host`) as Dask's cluster sees it: started
        by sending it its nannies' spec, closed by killing it and its workers."""

        def __init__(self, scheduler: str, name: str | None = None, nannies: dict[str, dict] | None = None,
                     process: Any = None) -> None:
            super().__init__()
            self.scheduler, self.name, self.nannies, self.process = scheduler, name, nannies or {}, process

        async def start(self) -> None:
            spec = {name: {"cls": "distributed.Nanny", "opts": opts} for name, opts in self.nannies.items()}
            try:
                self.process.stdin.write((json.dumps({"scheduler": self.scheduler, "spec": spec}) + "\n").encode())
                self.process.stdin.close()
            except OSError:  # it died while importing torch
                raise RuntimeError(f"a worker host process exited with code {self.process.wait()} "
                                   "before its workers started") from None
            await super().start()

        async def close(self) -> None:
            if self.process is not None:
                # Reaped without a thread: at interpreter exit no executor takes new work.
                _kill_host(self.process, wait=False)
                while self.process.poll() is None:
                    await asyncio.sleep(0.01)
            await super().close()

    return HostProcess


def _hosts(specs: Sequence[WorkerSpec]) -> list[tuple[str, list[WorkerSpec]]]:
    """The local cluster's host processes: ``[(key, worker specs)]``, one process for the
    workers whose environment is the same (all CPU workers of a plan: one thread count).

    Its nannies' workers are forked from its fork server, which for CPU workers imports torch
    before they start (``workbench/_host.py``): torch and ``torch._dynamo`` are imported once per
    host, not once per worker (2.4 s of CPU a worker on 2 cores), and a restarted worker has them too.
    Dask names a grouped entry's workers key + suffix: the key is the names' common prefix
    (``cpu-``); a group whose prefix another entry has taken is given one process a worker."""
    by_env: dict[tuple, list[WorkerSpec]] = {}
    for spec in specs:
        by_env.setdefault(tuple(sorted(_worker_env(spec).items())), []).append(spec)
    hosts: list[tuple[str, list[WorkerSpec]]] = []
    for members in by_env.values():
        key = os.path.commonprefix([s.name for s in members])
        if len(members) > 1 and key not in {k for k, _ in hosts}:
            hosts.append((key, members))
        else:
            hosts.extend((s.name, [s]) for s in members)
    return hosts


@dataclasses.dataclass
class _Launch:
    """A warm-up's host processes: ``done`` is set once they are all launched (or failed to be)."""

    processes: list = dataclasses.field(default_factory=list)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


def _nanny_environ(security: Any = None) -> dict[str, str]:
    """A host process's environment: ours, plus the Dask settings it must start with
    (TLS included: the nanny and its worker read their certificates from them)."""
    import dask.config

    from ._security import tls_config

    inherited = os.environ.get("DASK_INTERNAL_INHERIT_CONFIG")
    config = dask.config.deserialize(inherited) if inherited else {}
    dask.config.update(config, {"distributed": {
        # None unsets the variable (the nanny skips it): see the module docstring
        "nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}},
        # daemon: trainers may start processes of their own. profile: Dask's statistical
        # profiler samples the worker's stacks every 10 ms, a thread contending for the GIL
        # with every training step; its flame graph is of no use for our tasks.
        # forkserver: each worker (and any restart of it) is forked from its host's fork
        # server, which has imported distributed and torch already (workbench/_host.py);
        # spawn started a fresh interpreter that imported them again, seconds of CPU per
        # worker at every run's start, and a fork from the host itself would copy the locks
        # its nannies' threads hold. The host is a fresh interpreter started with the
        # workers' thread variables (see _start_new), so nothing of the caller leaks into a worker.
        "worker": {"daemon": False, "profile": {"enabled": False}, "multiprocessing-method": "forkserver"},
        # Idle nanny and worker work: resource samples every 2 s instead of 0.5 s (nothing
        # decides on them with memory_limit=0; the dashboard's plots are coarser), and the
        # event-loop tick (which only times the loop, to warn when it was blocked for 3 s)
        # every 0.5 s instead of 20 ms: measured on an idle 2-worker cluster, the ticks
        # were most of the 17 ms/s each worker's loop thread spent (3 ms/s after), CPU
        # taken from training and GIL hand-offs with the training thread.
        "admin": {"system-monitor": {"gil": {"enabled": False}, "interval": "2s"}, "tick": {"interval": TICK}},
        **tls_config(security),
    }})
    return {**os.environ, "DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(config)}


_parked: dict[str, Any] = {"handle": None, "timer": None}
_park_lock = threading.Lock()


def _park(handle: ClusterHandle) -> bool:
    """Keep ``handle`` for the next run with its layout; the one parked before is closed."""
    with _park_lock:
        old, timer = _parked["handle"], _parked["timer"]
        if timer is not None:
            timer.cancel()
        timer = threading.Timer(IDLE_CLOSE_S, _close_parked, args=(handle,))
        timer.daemon = True
        _parked.update(handle=handle, timer=timer)
        timer.start()
    if old is not None and old is not handle:
        old.close_now()
    return True


def _close_parked(handle: ClusterHandle | None = None) -> None:
    """Close the parked cluster (``handle``: only if it is still the one parked)."""
    with _park_lock:
        parked = _parked["handle"]
        if parked is None or (handle is not None and parked is not handle):
            return
        if _parked["timer"] is not None:
            _parked["timer"].cancel()
        _parked.update(handle=None, timer=None)
    parked.close_now()


# A cluster started ahead of the run's plan (warm_up): parked when its workers are up.
_warming: dict[str, Any] = {"key": None, "thread": None, "spawned": None}
log = logging.getLogger(__name__)


def dashboard_wanted() -> bool:
    """Whether a local scheduler serves Dask's dashboard (``WORKBENCH_DASHBOARD=1``)."""
    return os.environ.get("WORKBENCH_DASHBOARD", "0") == "1"


def _reuse_key(specs: Sequence[WorkerSpec], host: str, dashboard: bool) -> tuple:
    """What a parked (or warming) cluster must match to serve a run: one key for all three."""
    return tuple(specs), host, dashboard


def warm_up(specs: Sequence[WorkerSpec], preload: Sequence[str] = (), host: str = "127.0.0.1",
            dashboard: bool | None = None) -> bool:
    """Start a local cluster of ``specs`` in a background thread and park it once its
    workers are up, for the :func:`start_local_cluster` call with the same layout that
    follows. Returns whether one was started (not when reuse is off, one is already
    parked with that layout, or another warm-up is under way).

    What for: the layout of a run's workers is known only from its plan, and while the
    driver planned alone the other cores idled (1.5 s of CPU on a small machine when the
    plan imported the models' modules and torch; it reads their cards now). A caller that
    can tell the layout from the preset (``run._warm_up``) starts the workers first, so
    their imports run alongside the driver's work. A layout guessed wrong costs the CPU
    of a start that nothing uses (the cluster stays parked until the next one parks or
    :data:`IDLE_CLOSE_S`), never a wrong cluster: :func:`start_local_cluster` takes a
    parked one only with its layout.
    """
    if os.environ.get("WORKBENCH_REUSE_CLUSTER", "1") == "0":
        return False
    dashboard = dashboard_wanted() if dashboard is None else dashboard
    key = _reuse_key(specs, host, dashboard)
    spawned = _Launch()
    with _park_lock:
        running = _warming["thread"] is not None and _warming["thread"].is_alive()
        parked = _parked["handle"]
        if running or (parked is not None and parked.reuse_key == key):
            return False
        thread = threading.Thread(target=_warm, args=(list(specs), tuple(preload), host, dashboard, spawned),
                                  name="workbench-cluster-warm-up", daemon=True)
        _warming.update(key=key, thread=thread, spawned=spawned)
    thread.start()
    # Back to the caller once the host processes are launched: until then this process's
    # own work (importing torch, holding the GIL) would only delay their launch.
    spawned.done.wait(30.0)  # set by the thread's end too; bounded all the same
    return True


def _warm(specs: list[WorkerSpec], preload: tuple[str, ...], host: str, dashboard: bool,
          spawned: _Launch) -> None:
    try:
        handle = _start_new(specs, host, dashboard, preload, None, spawned)
    except Exception as exc:  # the run's own start reports a real failure; this was only ahead of it
        log.debug("cluster warm-up failed: %s", exc)
        return
    finally:
        spawned.done.set()
    _park(handle)


def _await_warm_up(key: tuple | None) -> None:
    """Wait for a warm-up under way with layout ``key`` (None: any) to park its cluster."""
    thread = _warming["thread"]
    if thread is not None and thread is not threading.current_thread() and (key is None or _warming["key"] == key):
        thread.join(WORKER_START_TIMEOUT_S + 60)


def _at_exit() -> None:
    """Close the parked cluster. A warm-up still starting (its run was refused, bad input
    found by the plan) is cut short: its nannies and their workers are killed rather than
    the exit waiting seconds for workers nothing will use."""
    thread, spawned = _warming["thread"], _warming["spawned"]
    if thread is not None and thread.is_alive() and spawned is not None:
        for process in list(spawned.processes):
            _kill_host(process, wait=False)
    _close_parked()


atexit.register(_at_exit)


def _unpark(key: tuple) -> ClusterHandle | None:
    """The parked cluster if it has layout ``key`` and is in good health (then no longer parked)."""
    with _park_lock:
        handle = _parked["handle"]
        if handle is None or handle.reuse_key != key:
            return None
        if _parked["timer"] is not None:
            _parked["timer"].cancel()
        _parked.update(handle=None, timer=None)
    if not handle._healthy():
        handle.close_now()
        return None
    by_name = {s.name: s for s in handle.workers.values()}  # addresses change when a worker restarts
    info = handle.client.scheduler_info(n_workers=-1)["workers"]
    handle.workers = {addr: by_name[str(w["name"])] for addr, w in info.items()}
    return handle


def start_local_cluster(specs: Sequence[WorkerSpec], host: str = "127.0.0.1",
                        dashboard: bool | None = None, preload: Sequence[str] = (),
                        security: Any = None) -> ClusterHandle:
    """``preload``: ``model=NAME`` and ``data=NAME:SEED`` items each worker loads at start;
    ``security``: a ``distributed.security.Security`` for TLS between every process.

    A parked cluster with the same workers, host and dashboard setting is used instead of
    a new one (a model or dataset it did not preload is loaded by its first task). A TLS
    cluster is never parked or reused: its certificates belong to the run that asked.
    A :func:`warm_up` of this layout under way is waited for and its cluster used.
    ``dashboard``: serve Dask's dashboard (default: :func:`dashboard_wanted`)."""
    dashboard = dashboard_wanted() if dashboard is None else dashboard
    key = _reuse_key(specs, host, dashboard) if security is None else None
    if key is not None:
        _await_warm_up(key)
    warm = _unpark(key) if key is not None else None
    if warm is not None:
        return warm
    return _start_new(specs, host, dashboard, preload, security)


def _host_entry(host_process: type, name: str, members: list[WorkerSpec], process: Any, host: str,
                preload: Sequence[str]) -> dict[str, Any]:
    """The ``SpecCluster`` entry of one launched host process and its nannies."""
    nannies = {spec.name: {
        "nthreads": 1,
        "host": host,
        "resources": dict(spec.resources) or None,
        "env": {**_worker_env(spec), "WORKBENCH_PRELOAD": ";".join(preload)},
        "preload": [PRELOAD],
        "name": spec.name,
        "memory_limit": 0,
        "silence_logs": logging.ERROR,
    } for spec in members}
    entry = {"cls": host_process, "options": {"nannies": nannies, "process": process}}
    if len(members) > 1:
        entry["group"] = [spec.name[len(name):] for spec in members]
    return entry


def _start_new(specs: Sequence[WorkerSpec], host: str, dashboard: bool, preload: Sequence[str],
               security: Any, spawned: _Launch | None = None) -> ClusterHandle:
    import dask

    key = _reuse_key(specs, host, dashboard) if security is None else None
    environ = _nanny_environ(security)
    hosts = _hosts(specs)
    # Work stealing moves queued tasks between workers; ours are pinned to one worker each,
    # so its periodic pass over the tasks is pure cost in the driver's event loop.
    settings = {"distributed.scheduler.worker-saturation": 1.0, "distributed.scheduler.work-stealing": False,
                "distributed.admin.system-monitor.interval": "2s", "distributed.admin.tick.interval": TICK}
    processes = spawned.processes if spawned is not None else []
    try:  # the hosts are ours until the cluster has them
        # Launched first, before this process imports distributed and starts the scheduler:
        # their torch imports are the longest part of the start.
        for _, members in hosts:
            # The workers' thread variables in the host's own environment too: its fork server
            # imports numpy and torch, and a forked worker keeps the thread pools they made.
            processes.append(_launch_host({**environ, **_worker_env(members[0])}))
        if spawned is not None:
            spawned.done.set()
        from distributed import Scheduler, SpecCluster

        host_process = _host_process_class()
        workers = {name: _host_entry(host_process, name, members, process, host, preload)
                   for (name, members), process in zip(hosts, processes)}
        # The scheduler's HTTP server (API, health, the dashboard where asked) on a free port
        # of ``host``: without an address it takes 8787 on every interface.
        scheduler = {"cls": Scheduler, "options": {"host": host, "dashboard_address": f"{host}:0",
                                                   "dashboard": dashboard}}
        if security is not None:
            scheduler["options"].update(protocol="tls://", security=security)
        with dask.config.set(settings):
            try:
                cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR,
                                      security=security)
            except Exception as exc:
                from .errors import WorkbenchError

                raise WorkbenchError(f"the local cluster did not start: {str(exc).splitlines()[0][:200]}; try "
                                     "again, and if it fails the same way, start fewer models at once") from None
    except BaseException:
        for process in processes:
            _kill_host(process)
        raise
    from distributed import Client

    with dask.config.set(settings):
        client = Client(cluster, security=security)
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S  # workers and their nannies: one limit
    try:
        client.wait_for_workers(len(specs), timeout=WORKER_START_TIMEOUT_S)
        _wait_for_nannies(client, len(specs), max(0.0, deadline - time.monotonic()))
    except Exception as exc:  # distributed's WorkerStartTimeoutError (a TimeoutError) or a nanny that died
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        with contextlib.suppress(Exception):
            cluster.close(timeout=20)
        from .errors import WorkbenchError

        raise WorkbenchError(f"the local cluster's {len(specs)} worker(s) did not start within "
                             f"{WORKER_START_TIMEOUT_S:.0f} s ({str(exc).splitlines()[0][:160]}); the machine may be "
                             "overloaded: try again, or start fewer models at once") from None
    by_name = {s.name: s for s in specs}
    info = client.scheduler_info(n_workers=-1)["workers"]
    return ClusterHandle(client, cluster, {addr: by_name[w["name"]] for addr, w in info.items()}, reuse_key=key,
                         dashboard=dashboard)


def _nanny_status(dask_worker: Any) -> str:
    return dask_worker.status.name


def _wait_for_nannies(client: Any, count: int, timeout: float) -> None:
    """Wait until every nanny has finished its own start, not only its worker's.

    A worker is listed by the scheduler before its nanny has heard that it started (the
    nanny polls for it every 50 ms). A worker that dies in that window is not restarted,
    and its nanny fails its start, which ends the host process with every worker in it
    (Dask's ``dask spec`` exits when one of its servers fails to start)."""
    deadline = time.monotonic() + timeout
    while True:
        states = client.run(_nanny_status, nanny=True)
        if len(states) >= count and all(state == "running" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the nannies did not finish starting: {sorted(states.values())}")
        time.sleep(0.02)


def connect(scheduler: str | Client | Any, security: Any = None) -> ClusterHandle:
    """Use an existing Dask cluster.

    ``scheduler``: an address (``tcp://host:8786``; TLS through Dask's ``Security``), a
    ``distributed.Client`` (used as it is and left open when the run ends), or a Dask
    cluster object such as a ``LocalCluster`` (its scheduler address).
    """
    from distributed import Client

    from .errors import WorkbenchError

    if isinstance(scheduler, Client):
        if scheduler.asynchronous:
            raise WorkbenchError("an asynchronous distributed.Client cannot drive a run; pass a Client made "
                                 "with asynchronous=False, or its scheduler address")
        if scheduler.status not in ("running", "connecting", "newly-created"):
            raise WorkbenchError(f"the distributed.Client given as scheduler is {scheduler.status}; "
                                 "pass an open Client or a scheduler address")
        client, owned = scheduler, False
        address = scheduler.scheduler.address if scheduler.scheduler else "the Client's scheduler"
    else:
        address = getattr(scheduler, "scheduler_address", scheduler)  # a cluster object: its address
        if not isinstance(address, str):
            raise WorkbenchError(f"scheduler: expected an address like 'tcp://host:8786', a distributed.Client or "
                                 f"a Dask cluster, got {type(scheduler).__name__}")
        scheme = address.split("://", 1)[0] if "://" in address else "tcp"
        if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
            raise WorkbenchError(f"--scheduler {address}: '{scheme}://' is not a Dask address; use "
                                 "tcp://HOST:8786 (or tls:// with security)")
        try:
            client, owned = Client(address, security=security, timeout=20), True
        except (OSError, ValueError, TypeError) as exc:  # unreachable, or an address Dask cannot parse
            raise WorkbenchError(f"cannot reach the Dask scheduler at {address}: {exc}; "
                                 "check the address and that `dask scheduler` is running") from None
    info = client.scheduler_info(n_workers=-1)["workers"]
    if not info:
        if owned:
            client.close()
        raise WorkbenchError(f"the Dask scheduler at {address} has no workers; start some with "
                             f"`dask worker {address}`")
    try:
        workers, inventory = external_inventory(client, info)
    except Exception:
        if owned:
            client.close()
        raise
    return ClusterHandle(client, None, workers, inventory, owns_client=owned)


def external_inventory(client: Any, info: dict[str, dict]) -> tuple[dict[str, WorkerSpec], Inventory]:
    """An external cluster's workers as placement sees them: every worker started with
    ``--resources GPU=N`` (N >= 1) is one GPU of the plan, probed on the worker itself (name,
    memory, UUID of its ``cuda:0``); CPU threads are the workers' threads together."""
    from ._gpus import worker_gpu
    from .errors import WorkbenchError

    addresses = sorted(info)
    with_gpu = [a for a in addresses if float((info[a].get("resources") or {}).get("GPU", 0)) >= 1]
    probes = client.run(worker_gpu, workers=with_gpu) if with_gpu else {}
    missing = [str(info[a].get("name", a)) for a in with_gpu if not probes.get(a)]
    if missing:
        raise WorkbenchError(f"Dask worker(s) {', '.join(missing)} advertise GPU resources but torch sees no CUDA "
                             "device there; start them on a GPU machine or without --resources GPU=...")
    workers: dict[str, WorkerSpec] = {}
    gpus: list[GPU] = []
    for addr in addresses:
        w = info[addr]
        name, threads = str(w.get("name", addr)), int(w.get("nthreads", 1) or 1)
        probe = probes.get(addr)
        if probe is None:
            workers[addr] = WorkerSpec(name, threads)
            continue
        gpu = GPU(len(gpus), probe["name"], probe["memory_gb"], physical=probe["physical"], uuid=probe["uuid"],
                  memory_used_gb=probe["memory_used_gb"], memory_free_gb=probe["memory_free_gb"])
        gpus.append(gpu)
        workers[addr] = WorkerSpec(name, threads, gpu.index, (("GPU", 1.0),), gpu.visible_id)
    memory = sum(float(w.get("memory_limit") or 0) for w in info.values()) / 2**30
    cpus = sum(s.threads for s in workers.values())
    return workers, Inventory(cpus=max(1, cpus), memory_gb=round(memory, 1), gpus=tuple(gpus))
