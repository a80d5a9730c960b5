import pytest

from workbench.errors import PlacementError
from workbench.resources import GPU, Inventory, Request, layout_workers, plan_placement, rebalance

TWO_GPUS = Inventory(cpus=16, memory_gb=64, gpus=(GPU(0, "A", 80), GPU(1, "B", 80)))
NO_GPU = Inventory(cpus=2, memory_gb=24)


def test_four_models_on_two_gpus_share_them_evenly():
    placements = plan_placement([Request(f"m{i}", "gpu") for i in range(4)], TWO_GPUS)
    per_gpu = {}
    for p in placements:
        per_gpu.setdefault(p.gpu_index, []).append(p.gpu_fraction)
    assert per_gpu == {0: [0.5, 0.5], 1: [0.5, 0.5]}
    assert sum(p.threads for p in placements) <= TWO_GPUS.cpus


def test_a_share_too_large_is_refused_with_the_reason():
    with pytest.raises(PlacementError, match=r"GPU 0 \(A\): shares add up to 1.2 > 1"):
        plan_placement([Request("a", "cuda:0", 0.7), Request("b", "cuda:0", 0.5)], TWO_GPUS)


def test_no_gpu_auto_goes_to_cpu_and_explicit_gpu_is_refused():
    placements = plan_placement([Request("a"), Request("b")], NO_GPU)
    assert [p.device for p in placements] == ["cpu", "cpu"]
    assert [p.threads for p in placements] == [1, 1]
    with pytest.raises(PlacementError, match="asks for 'gpu' but this machine has no GPU"):
        plan_placement([Request("a", "gpu")], NO_GPU)


def test_threads_never_exceed_cores():
    with pytest.raises(PlacementError, match="asks for 4 threads but the machine has 2 cores"):
        plan_placement([Request("a", "cpu", threads=4)], NO_GPU)
    assert plan_placement([Request("a", "cpu", threads=2)], NO_GPU)[0].threads == 2


def test_a_lone_model_gets_one_thread_unless_it_asks_for_more():
    # small models step in ms: a second torch thread only adds synchronisation
    [placement] = plan_placement([Request("a", "cpu")], NO_GPU)
    assert placement.threads == 1
    assert layout_workers([placement], NO_GPU)[0].threads == 1
    workers = layout_workers(plan_placement([Request(f"m{i}") for i in range(7)], NO_GPU), NO_GPU)
    assert sum(w.threads for w in workers) <= NO_GPU.cpus


def test_finished_models_share_goes_to_the_others():
    placements = plan_placement([Request(f"m{i}", "cuda:0") for i in range(3)], TWO_GPUS)
    after = rebalance(placements, finished={"m0"})
    fractions = {p.instance: p.gpu_fraction for p in after}
    assert fractions["m1"] == pytest.approx(0.5) and fractions["m2"] == pytest.approx(0.5)


def test_gpu_workers_are_pinned_one_per_share():
    placements = plan_placement([Request("a", "gpu"), Request("b", "gpu"), Request("c", "cpu")], TWO_GPUS)
    workers = layout_workers(placements, TWO_GPUS)
    gpu_workers = [w for w in workers if w.gpu_index is not None]
    assert sorted(w.gpu_index for w in gpu_workers) == [0, 1]
    assert any(w.gpu_index is None for w in workers)


@pytest.mark.gpu
def test_memory_fraction_caps_a_share_on_a_real_gpu():
    import torch

    torch.cuda.set_per_process_memory_fraction(0.05, 0)
    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(int(total * 0.2), dtype=torch.uint8, device="cuda:0")


# -- the user's GPUs and only those ------------------------------------------------------------
from workbench._gpus import map_visible  # noqa: E402
from workbench.cluster import _worker_env  # noqa: E402
from workbench.resources import GPUProcess  # noqa: E402


def _machine(*free_gb):
    """A 4-GPU server as NVML reports it; GPU i has ``free_gb[i]`` of 80 GB free."""
    return [GPU(i, "H100", 80.0, physical=str(i), uuid=f"GPU-{i}aaa-{i}", memory_used_gb=80.0 - free,
                memory_free_gb=free, processes=(GPUProcess(1000 + i, 80.0 - free),) if free < 80 else ())
            for i, free in enumerate(free_gb)]


def test_cuda_visible_devices_maps_logical_to_physical_gpus():
    gpus = map_visible(_machine(80, 80, 80, 80), "2,3")
    assert [(g.index, g.physical, g.uuid) for g in gpus] == [(0, "2", "GPU-2aaa-2"), (1, "3", "GPU-3aaa-3")]
    inventory = Inventory(cpus=8, memory_gb=64, gpus=gpus)
    placements = plan_placement([Request("a", "cuda:0"), Request("b", "cuda:1"), Request("c", "cpu")], inventory)
    workers = {w.gpu_index: w for w in layout_workers(placements, inventory) if w.gpu_index is not None}
    # The worker of logical GPU 0 is pinned to physical GPU 2 (by UUID), not to somebody else's GPU 0.
    assert _worker_env(workers[0])["CUDA_VISIBLE_DEVICES"] == "GPU-2aaa-2"
    assert _worker_env(workers[1])["CUDA_VISIBLE_DEVICES"] == "GPU-3aaa-3"
    cpu_worker = next(w for w in layout_workers(placements, inventory) if w.gpu_index is None)
    assert _worker_env(cpu_worker)["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize("variable, physical", [
    (None, ["0", "1", "2", "3"]),  # unset: every GPU
    ("", []), ("-1", []),  # the usual ways to hide them all
    ("3,1", ["3", "1"]),  # CUDA's order is the variable's
    ("GPU-1aaa,0", ["1", "0"]),  # UUID prefixes
    ("1,7,2", ["1"]),  # as in CUDA, an invalid entry hides itself and every later one
    ("2,2", []),  # a duplicate hides every GPU (CUDA's rule, and torch's)
])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(variable, physical):
    assert [g.physical for g in map_visible(_machine(80, 80, 80, 80), variable)] == physical


def test_cuda_s_own_view_decides_when_torch_knows_the_uuids():
    machine = _machine(80, 80, 80, 80)
    assert [g.physical for g in map_visible(machine, "0,1", ["GPU-3aaa-3", "GPU-0aaa-0"])] == ["3", "0"]
    assert [g.physical for g in map_visible(machine, "0,1", ["GPU-unknown"])] == ["0", "1"]  # disagree: variable


def test_placement_leaves_memory_held_by_others_to_them():
    # GPU 0 is 3/4 used by another process, GPU 1 is free: auto models go to GPU 1 first,
    # and GPU 0's shares add up to at most its free quarter.
    inventory = Inventory(cpus=16, memory_gb=64, gpus=tuple(map_visible(_machine(20, 80), None)))
    placements = {p.instance: p for p in plan_placement([Request(f"m{i}", "gpu") for i in range(4)], inventory)}
    on = {i: sorted(p.gpu_fraction for p in placements.values() if p.gpu_index == i) for i in (0, 1)}
    assert on[1] == [pytest.approx(1 / 3)] * 3 and on[0] == [pytest.approx(0.25)]
    with pytest.raises(PlacementError, match=r"shares add up to 0.5 > 0.25 \(other processes hold 60.0 GB\)"):
        plan_placement([Request("a", "cuda:0", 0.5)], inventory)


def test_a_full_gpu_is_refused_or_skipped():
    inventory = Inventory(cpus=4, memory_gb=16, gpus=tuple(map_visible(_machine(1), None)))
    with pytest.raises(PlacementError, match=r"GPU 0 \(H100\) is full: 1.0 of 80.0 GB free, other processes hold 79.0"):
        plan_placement([Request("a", "cuda:0")], inventory)
    assert plan_placement([Request("a")], inventory)[0].device == "cpu"  # auto falls back to the CPU


def test_detection_combines_torch_and_nvml(monkeypatch):
    from workbench import _gpus

    machine = _machine(80, 80, 30, 80)
    seen = [GPU(0, "H100", 80.0, physical="2", uuid="GPU-2aaa-2"), GPU(1, "H100", 80.0, physical="3", uuid="GPU-3aaa-3")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(_gpus, "probe_nvml", lambda: machine)
    monkeypatch.setattr(_gpus, "probe_torch", lambda visible: (seen, [g.uuid for g in seen]))
    gpus = _gpus.detect_gpus()
    assert [(g.index, g.physical, g.memory_free_gb) for g in gpus] == [(0, "2", 30), (1, "3", 80)]
    monkeypatch.setattr(_gpus, "probe_torch", lambda visible: (seen[:1], None))  # NVML sees more: torch holds
    assert _gpus.detect_gpus() == (seen[0],)
    monkeypatch.setattr(_gpus, "probe_torch", lambda visible: ([], None))  # torch cannot use CUDA here
    assert _gpus.detect_gpus() == ()
    monkeypatch.setattr(_gpus, "probe_nvml", lambda: None)
    monkeypatch.setattr(_gpus, "probe_torch", lambda visible: (seen, None))
    assert _gpus.detect_gpus() == tuple(seen)  # no NVML: names and sizes from torch
