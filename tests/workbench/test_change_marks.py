"""Charts that tell what happened, and the report that opens with a summary: one real run of
digits_mutual in which a user changes a learning rate and pauses a model after epoch 1."""
from __future__ import annotations

import time

import pytest

import workbench as wb
from workbench.charts import change_marks, figure_png, resources_figure, run_figure
from workbench.summary import changes_table, run_summary

pytestmark = pytest.mark.slow

MLP = "digits_mlp@digits"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = wb.start_run("digits_mutual", {"epochs": 3}, tmp_path_factory.mktemp("runs"))
    deadline = time.time() + 300
    while run.snapshot().models[MLP].epoch < 1 and time.time() < deadline:
        run.wait(timeout=0.05)
    run.set_hparam(MLP, "lr", 0.02)
    run.pause(MLP)
    run.wait(timeout=1.0)  # the pause lasts a second of the run's own time
    run.resume_model(MLP)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    return wb.open_run(run.id, run.dir.parent)


def test_marks_sit_where_the_changes_happened(run):
    metrics, events = run.metrics(), run.events()
    marks = change_marks(events, metrics, "epoch")
    assert [m["source"] for m in marks] == ["user", "pause"]
    assert all(1.0 <= m["x"] < 2.0 for m in marks)  # after epoch 1, within epoch 2
    assert marks[0]["label"].startswith("lr ") and marks[0]["label"].endswith("→ 0.02")
    steps = change_marks(events, metrics, "step")
    applied = events[events["kind"] == "hparam"]["payload"].iloc[0]["step"]
    assert steps[0]["x"] == pytest.approx(applied, abs=2)
    seconds = change_marks(events, metrics, "wall_time")
    assert 0 < seconds[0]["x"] < metrics["wall_time"].max() - metrics["wall_time"].min()


def test_small_multiples_with_marks_and_one_legend(run):
    metrics, events = run.metrics(), run.events()
    fig = run_figure(metrics, ["eval/accuracy", "train/loss", "eval/loss"], events=events, x="epoch")
    assert len(fig.axes) == 3
    for ax in fig.axes:
        vertical = [line for line in ax.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
        assert len(vertical) == 2  # the user's change and the pause, on every panel
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"change: user", "change: pause", MLP, "digits_cnn@digits"} <= set(labels)
    assert figure_png(fig)[:4] == b"\x89PNG"


def test_log_scale_and_x_axes(run):
    metrics = run.metrics()
    fig = run_figure(metrics, ["train/loss"], x="step", log=True)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_xlabel() == "step"
    fig = run_figure(metrics, ["train/loss"], x="wall_time")
    assert fig.axes[0].get_xlabel() == "seconds since start"
    with pytest.raises(ValueError, match="x must be one of epoch, step, wall_time"):
        run_figure(metrics, ["train/loss"], x="time")


def test_resources_chart_draws_what_the_engine_recorded(run):
    fig = resources_figure(run.metrics())
    titles = [ax.get_title() for ax in fig.axes]
    assert {"CPU % (worker process)", "resident memory (MB)", "steps/s"} <= set(titles)
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # both models


def test_summary_and_changes(run):
    summary = run_summary(run.dir)
    assert summary["state"] == "finished" and summary["preset"] == "digits_mutual"
    assert "CPUs" in summary["hardware"] and "torch" in summary["software"] and summary["duration"].endswith("s")
    metrics = summary["metrics"].set_index("model")
    assert metrics.loc[MLP, "epochs"] == "3/3"
    assert metrics.loc[MLP, "best eval/accuracy"] >= metrics.loc[MLP, "final eval/accuracy"]
    changes = changes_table(run.dir)
    assert list(changes["change"]) == ["set", "paused", "continued"]
    assert list(changes["by"]) == ["user", "user", "user"] and "→ 0.02 (pinned)" in changes["detail"].iloc[0]


def test_report_opens_with_the_summary_and_lists_changes(run):
    paths = run.report()
    page = paths["report.html"].read_text()
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Charts</h2>")
    for text in ("hardware", "duration", "best eval/accuracy", "Live changes", "→ 0.02", "Settings", "seed"):
        assert text in page, text
    assert "127.0.0.1" not in page and "file://" not in page
    assert {"metrics.png", "resources.png", "eval_accuracy.png"} <= set(paths)
