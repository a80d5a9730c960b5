"""The resource part with injected inventories: plans shown, impossible plans refused."""
from __future__ import annotations

from workbench.presets import resolve_preset
from workbench.resources import GPU, Inventory
from widgets import Resources, ResourcesLogic

TWO_GPUS = Inventory(cpus=8, memory_gb=64.0, gpus=(GPU(0, "Test A100", 40.0, 12.0), GPU(1, "Test A100", 40.0)))


def _part(inventory):
    part = Resources(ResourcesLogic(inventory))
    part.logic.set_preset(*resolve_preset("digits_mutual"))
    return part


def test_devices_and_default_plan_are_shown():
    part = _part(TWO_GPUS)
    assert "Test A100" in part.devices.value and "12% busy" in part.devices.value and "8 cores" in part.devices.value
    assert part.logic.ok
    devices = {p.instance: p.device for p in part.logic.placements}
    assert devices == {"digits_mlp@digits": "cuda:0", "digits_cnn@digits": "cuda:1"}
    assert "cuda:1" in part.plan.value


def test_shares_over_one_gpu_are_refused_with_the_reason():
    part = _part(TWO_GPUS)
    for model, share in (("digits_mlp", 0.7), ("digits_cnn", 0.6)):
        part.controls[model]["device"].value = "cuda:0"
        part.controls[model]["gpu_fraction"].value = share
    assert not part.logic.ok
    assert "shares add up to 1.3 > 1" in part.logic.reason
    assert "shares add up to 1.3" in part.plan.value
    part.controls["digits_cnn"]["gpu_fraction"].value = 0.3
    assert part.logic.ok
    fractions = {p.instance: p.gpu_fraction for p in part.logic.placements}
    assert fractions == {"digits_mlp@digits": 0.7, "digits_cnn@digits": 0.3}
    assert part.logic.overrides() == {
        "models.digits_mlp.resources.device": "cuda:0", "models.digits_mlp.resources.gpu_fraction": 0.7,
        "models.digits_cnn.resources.device": "cuda:0", "models.digits_cnn.resources.gpu_fraction": 0.3}


def test_gpu_without_gpu_and_too_many_cores_are_refused():
    part = _part(Inventory(cpus=2, memory_gb=4.0))
    assert part.logic.ok and {p.device for p in part.logic.placements} == {"cpu"}
    assert part.controls["digits_mlp"]["device"].options == ("auto", "cpu")
    part.logic.set_choice("digits_mlp", "device", "gpu")
    assert not part.logic.ok and "this machine has no GPU" in part.logic.reason
    part.logic.set_choice("digits_mlp", "device", "cpu")
    part.controls["digits_cnn"]["threads"].value = 3
    assert "asks for 3 threads but the machine has 2 cores" in part.plan.value
    part.controls["digits_cnn"]["threads"].value = 2
    assert part.logic.ok and {p.instance: p.threads for p in part.logic.placements}["digits_cnn@digits"] == 2


def test_a_runs_gpus_show_our_models_memory_others_and_utilization(tmp_path):
    """Per GPU while a run trains: each model's sys/gpu_memory_mb, what others hold (NVML
    used minus ours) and utilization; the run's logical GPU 0 is physical GPU 2 here."""
    import dataclasses
    import json
    from types import SimpleNamespace

    from workbench.resources import Request, plan_placement

    gpu = GPU(0, "Test H100", 80.0, 5.0, physical="2", uuid="GPU-2", memory_used_gb=10.0, memory_free_gb=70.0)
    inventory = Inventory(cpus=8, memory_gb=64.0, gpus=(gpu,))
    placements = plan_placement([Request("a", "gpu"), Request("b", "gpu"), Request("c", "cpu")], inventory)
    (tmp_path / "environment.json").write_text(json.dumps(
        {"devices": inventory.as_dict(), "placements": [p.__dict__ for p in placements]}))
    part = Resources(ResourcesLogic(inventory))
    part.logic.bind(SimpleNamespace(dir=tmp_path))
    live = [dataclasses.replace(gpu, index=2, memory_used_gb=14.0, utilization=87.0)]
    part.logic.on_message({"type": "metrics", "rows": [("a", 1, 10, "sys/gpu_memory_mb", 1024.0, 0.0),
                                                       ("b", 1, 10, "sys/gpu_memory_mb", 2048.0, 0.0),
                                                       ("a", 1, 10, "train/loss", 0.5, 0.0)]})
    part.logic.refresh_usage(live)
    [row] = part.logic.usage
    assert row["models_mb"] == {"a": 1024.0, "b": 2048.0} and row["others_gb"] == 11.0 and row["utilization"] == 87.0
    assert ("GPU 0</b> Test H100 (physical 2): 80.0 GiB; a 1024 MiB, b 2048 MiB; others 11.00 GiB; 87% busy"
            in part.gpu_use.value)
    part.logic.refresh_usage(live=())  # no NVML: our models still, the rest marked unknown
    assert "others n/a (NVML missing)" in part.gpu_use.value and "5% busy" in part.gpu_use.value
