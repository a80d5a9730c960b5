"""The process hosting a local cluster's nannies: ``python -m workbench._host``, then one
JSON line on its stdin, ``{"scheduler": ADDRESS, "spec": {NAME: {"cls": ..., "opts": ...}}}``,
after which it is Dask's ``dask spec ADDRESS --spec SPEC``.

It is launched before the scheduler exists and imports torch while the driver starts
the scheduler: the imports are the longest part of a cluster's start. Its nannies fork
their workers from it, so each worker starts with torch loaded instead of importing it
itself, and with ``torch._dynamo``, which a trainer's first optimiser imports (about 1 s of
CPU each on a small machine). A worker the nanny restarts has them too. With the CPU build,
importing them starts no thread, so the forks are safe, as a DataLoader's workers are.
The process is started with its workers' thread variables (``workbench.cluster._hosts``):
the thread pools torch and numpy make here are theirs. An end of stdin before the line
(the driver died or gave up) ends the process.

Only the host of CPU workers (``CUDA_VISIBLE_DEVICES`` empty) imports torch: a GPU
worker's host leaves it to the worker, after the fork, as before. A CUDA build of torch
has not been checked to touch no GPU on import here (the development machine has none),
and a GPU run is long enough that its start matters little.
"""
import json
import os
import sys

if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401


def main() -> None:
    line = sys.stdin.readline()
    if not line.strip():
        return
    order = json.loads(line)
    from distributed.cli.dask_spec import main as dask_spec

    dask_spec([order["scheduler"], "--spec", json.dumps(order["spec"])], prog_name="dask spec")


if __name__ == "__main__":
    main()
