"""GPUs on an external Dask cluster: workers started with ``--resources GPU=1`` are the GPUs
of the plan. Real in-process workers; the per-worker GPU probe is replaced on this CPU-only
machine by one that reports a GPU, since torch sees none here."""
from __future__ import annotations

import pytest

from workbench import _gpus
from workbench.cluster import connect
from workbench.errors import WorkbenchError
from workbench.resources import Request, plan_placement


@pytest.fixture
def gpu_and_cpu_workers():
    from distributed import Scheduler, SpecCluster, Worker

    local = {"host": "127.0.0.1"}
    workers = {"gpu-worker": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}, **local}},
               "cpu-worker": {"cls": Worker, "options": {"nthreads": 2, **local}}}
    cluster = SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": "127.0.0.1:0", **local}})
    yield cluster.scheduler_address
    cluster.close()


def _fake_gpu():
    return {"name": "Fake H100", "memory_gb": 80.0, "memory_free_gb": 60.0, "memory_used_gb": 20.0,
            "uuid": "GPU-feed", "physical": "5"}


def test_external_workers_advertising_gpus_are_placed_on(gpu_and_cpu_workers, monkeypatch):
    monkeypatch.setattr(_gpus, "worker_gpu", _fake_gpu)
    handle = connect(gpu_and_cpu_workers)
    try:
        inventory = handle.inventory
        assert inventory.cpus == 3 and len(inventory.gpus) == 1
        gpu = inventory.gpus[0]
        assert (gpu.name, gpu.uuid, gpu.physical, gpu.available) == ("Fake H100", "GPU-feed", "5", 0.75)
        by_name = {spec.name: spec for spec in handle.workers.values()}
        assert by_name["gpu-worker"].gpu_index == 0 and by_name["gpu-worker"].gpu_id == "GPU-feed"
        assert by_name["cpu-worker"].gpu_index is None
        placements = plan_placement([Request("a", "gpu"), Request("b", "auto"), Request("c", "cpu")], inventory)
        assert [p.device for p in placements] == ["cuda:0", "cuda:0", "cpu"]
        assert sum(p.gpu_fraction for p in placements if p.gpu_fraction) == pytest.approx(0.75)
    finally:
        handle.close()


def test_a_worker_advertising_a_gpu_it_does_not_have_is_refused(gpu_and_cpu_workers):
    with pytest.raises(WorkbenchError, match="gpu-worker advertise GPU resources but torch sees no CUDA device"):
        connect(gpu_and_cpu_workers)
