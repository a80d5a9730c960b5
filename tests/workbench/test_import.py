import json
import subprocess
import sys


def test_import_workbench_loads_no_jupyter_or_plotting():
    code = ("import sys, workbench; workbench.list_models(); "
            "bad = [m for m in ('ipywidgets', 'IPython', 'matplotlib.pyplot') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_data_layer_imports_no_model_package():
    code = ("import sys; from workbench.data import load_dataset; load_dataset('sem_linear', 0); "
            "bad = sorted(m for m in sys.modules if m.startswith('workbench.models')); print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_run_is_planned_and_models_listed_without_importing_torch():
    """The driver plans from the built-in trainers' cards; the plan is the one their classes give."""
    code = """if True:
        import json, sys
        from workbench.errors import PresetError
        from workbench.listing import model_records
        from workbench.plan import make_plan
        from workbench.presets import resolve_preset

        def plans():
            out = [make_plan(*resolve_preset("quick", None)).as_dict(),
                   make_plan(*resolve_preset("quick", {"target_models": ["digits_mlp"]})).as_dict()]
            try:
                make_plan(*resolve_preset("quick", {"target_models": ["digits_mpl"]}))
            except PresetError as exc:
                out.append(exc.problems)
            return out, model_records()

        from_cards = plans()
        torch_free = "torch" not in sys.modules
        import workbench
        workbench.list_models()  # every model module imported: the plan reads the classes themselves
        assert "torch" in sys.modules
        print(json.dumps({"torch_free": torch_free, "cards": from_cards, "classes": plans()}, default=str))
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["torch_free"]
    (quick, digits, problems), records = out["cards"]
    assert len(quick["instances"]) == 8
    assert [i["instance"] for i in digits["instances"]] == ["digits_mlp@digits", "digits_mlp@digits#1"]
    assert problems == ["target_models: unknown model 'digits_mpl'; did you mean 'digits_mlp'?"]
    assert {r["name"]: r["class"] for r in records}["digits_mlp"] == "workbench.models.digits.DigitsMLP"
    assert out["cards"] == out["classes"]
