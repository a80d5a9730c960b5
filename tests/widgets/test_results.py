"""The Results tab comparing runs, the panel's static copy, the live chart's axis controls:
widget logic without a frontend, on run directories written through the store's API."""
from __future__ import annotations

import json
import time
from pathlib import Path

import workbench as wb
from widgets import ControlPanel
from widgets._charts import ChartsLogic, LiveChart
from widgets._results import Results, ResultsLogic, static_html
from workbench.store import RunStore

MODELS = ("digits_mlp@digits", "digits_cnn@digits")


def _run(root: Path, run_id: str, seed: int, accuracy: list[float]) -> str:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "preset.json").write_text(json.dumps({"name": "digits_mutual", "seed": seed, "epochs": len(accuracy)}))
    store = RunStore(run_dir / "store.sqlite")
    start = time.time() - 60
    store.set_run(state="finished", preset="digits_mutual", started=start, finished=start + 30, run_id=run_id)
    for model in MODELS:
        store.set_model(model, state="finished", epoch=len(accuracy), total_epochs=len(accuracy))
        for e, a in enumerate(accuracy):
            store.add_metrics([(model, e + 1, 10 * e + s, "train/loss", 1.0 / (e + s + 1), start + e + s / 10)
                               for s in range(1, 11)])
            store.add_metrics([(model, e + 1, 10 * (e + 1), "eval/accuracy", a, start + e + 1)])
    store.add_event(MODELS[0], "hparam", {"name": "lr", "old": 0.003, "new": 0.01, "source": "user", "step": 15,
                                          "epoch": 1}, wall_time=start + 1.5)
    store.flush()
    store.close()
    return run_id


def test_results_tab_compares_two_runs(tmp_path):
    root = tmp_path / "runs"
    ids = [_run(root, "run-a", 0, [0.5, 0.8]), _run(root, "run-b", 1, [0.6, 0.9])]
    results = Results(ResultsLogic(runs_dir=str(root)))
    results.on_refresh()
    assert set(results.run_choice.options) == set(ids)
    results.run_choice.value = tuple(ids)
    results.compare_button.click()
    page = results.compare_out.value
    assert "run-a" in page and "run-b" in page and "Settings that differ" in page
    assert "<td>seed</td>" in page and "0.85 ± 0.071" in page  # final accuracy 0.8 and 0.9 folded over the seeds
    assert results.compare_chart.value[:4] == b"\x89PNG"
    assert "seed" in results.group_choice.options
    results.group_choice.value = "seed"
    results.compare_button.click()
    assert "0.85 ± 0.071" not in results.compare_out.value  # one run per seed: no folding


def test_comparing_nothing_says_what_to_do(tmp_path):
    results = Results(ResultsLogic(runs_dir=str(tmp_path)))
    results.compare_button.click()
    assert "choose one or more runs" in results.compare_out.value


def test_results_of_a_run_open_with_its_summary(tmp_path):
    root = tmp_path / "runs"
    record = wb.open_run(_run(root, "run-a", 0, [0.5, 0.8]), root)
    results = Results()
    results.logic.show(record)
    assert "duration" in results.summary.value and "30 s" in results.summary.value
    assert "best eval/accuracy" in results.table.value and "lr: 0.003 → 0.01" in results.changes.value
    assert [img.value[:4] for img in results.gallery.children] == [b"\x89PNG"]  # metrics (no resources recorded)
    assert results.run_choice.options == ("run-a",)  # the run's own runs directory, ready to compare


def test_panel_has_a_static_copy_for_rendered_notebooks(tmp_path):
    panel = ControlPanel(preset="digits_mutual", runs_dir=tmp_path)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab still shows the live panel
    assert "no run started" in bundle["text/html"] and "digits_mutual" in bundle["text/html"]
    record = wb.open_run(_run(tmp_path / "runs", "run-a", 0, [0.5, 0.8]), tmp_path / "runs")
    page = static_html(record)
    assert "run-a" in page and "data:image/png;base64" in page and "best eval/accuracy" in page


def test_live_chart_x_axis_and_log_scale(tmp_path):
    root = tmp_path / "runs"
    record = wb.open_run(_run(root, "run-a", 0, [0.5, 0.8]), root)
    chart = LiveChart(ChartsLogic(interval=0))
    chart.logic.bind(record)
    chart.logic.render()
    first = chart.logic.png
    chart.metric.value = "train/loss"
    chart.x_axis.value = "wall_time"
    chart.log_scale.value = True
    chart.logic.render()
    assert chart.logic.x_axis == "wall_time" and chart.logic.log_scale
    assert chart.logic.png[:4] == b"\x89PNG" and chart.logic.png != first
