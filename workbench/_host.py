"""The process hosting a local cluster's nannies: ``python -m workbench._host``, then one
JSON line on its stdin, ``{"scheduler": ADDRESS, "spec": {NAME: {"cls": ..., "opts": ...}}}``,
after which it is Dask's ``dask spec ADDRESS --spec SPEC``.

Its nannies start their workers with multiprocessing's forkserver, which this process
starts first, before it waits for the spec: the fork server is a fresh interpreter that
imports distributed and, for CPU workers (``CUDA_VISIBLE_DEVICES`` empty), torch,
``torch._dynamo`` (which a trainer's first optimiser imports) and the worker's own module,
while the driver starts the scheduler. Those imports are the longest part of a cluster's
start (about 2.4 s of CPU a worker on 2 cores). Each worker, and each restart of one, is
forked from the fork server with them loaded.

Why not fork from this process: its nannies run an event loop and threads of their own
(one per worker process, and name lookups in an executor), and a child forked while
another thread holds a lock inherits the lock held by nobody. The fork server is single
threaded: it forks its children from a quiet main thread, as Python 3.14 does by default.

The process is started with its workers' thread variables (``workbench.cluster._start_new``),
which the fork server and so the workers inherit. A GPU worker's fork server leaves torch
to the worker: a CUDA build has not been checked here (the development machine has no
GPU), and a GPU run is long enough that its start matters little. An end of stdin before
the line (the driver died or gave up) ends the process.
"""
import json
import multiprocessing
import multiprocessing.forkserver
import os
import sys


def _start_fork_server() -> None:
    modules = ["distributed", "distributed.nanny"]
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        modules = ["torch", "torch._dynamo", *modules, "workbench._worker"]
    multiprocessing.get_context("forkserver").set_forkserver_preload(modules)
    multiprocessing.forkserver.ensure_running()


def main() -> None:
    _start_fork_server()
    line = sys.stdin.readline()
    if not line.strip():
        return
    order = json.loads(line)
    import distributed.utils

    # The fork server runs with our preload list: without this, distributed would import
    # its own list (pandas among them) here, for a preload the running server ignores.
    distributed.utils._forkserver_preload_set = True
    from distributed.cli.dask_spec import main as dask_spec

    dask_spec([order["scheduler"], "--spec", json.dumps(order["spec"])], prog_name="dask spec")


if __name__ == "__main__":
    main()
