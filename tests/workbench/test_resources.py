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
    placements = plan_placement([Request("a", "cpu")], NO_GPU)
    assert placements[0].threads == 2
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
