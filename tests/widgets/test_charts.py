"""Throttled redraws and the chart renderer, on a store written by hand."""
from __future__ import annotations

import time

from workbench.store import RunStore
from widgets import ChartsLogic, LiveChart, Throttle


def test_throttle_runs_at_most_once_per_interval_and_keeps_the_last_call():
    seen = []
    throttle = Throttle(lambda: seen.append(time.monotonic()), interval=0.3)
    for _ in range(50):
        throttle()
    assert len(seen) == 1  # the first at once, the rest folded into one trailing call
    time.sleep(0.5)
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.29


class _Record:
    """What the chart reads from a run: its metric names, one metric's per-epoch series, its events."""

    def __init__(self, path):
        from workbench.store import read_store

        self.reader = read_store(path)
        self.id = "hand-written"

    def metric_names(self):
        return self.reader.metric_names()

    def epoch_series(self, name):
        return self.reader.epoch_series(name)

    def metrics(self, model=None, name=None):
        return self.reader.metrics(model, name)

    def events(self, kind=None):
        return self.reader.events(kind)


def test_chart_renders_every_model_and_switches_metric(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    rows = []
    for model, base in (("a@digits", 0.5), ("b@digits", 0.6)):
        for epoch in range(1, 5):
            rows += [(model, epoch, epoch * 10, "eval/accuracy", base + epoch / 20, float(epoch)),
                     (model, epoch, epoch * 10, "train/loss_epoch", 2.0 / epoch, float(epoch))]
    store.add_metrics(rows)
    store.flush()
    store.close()
    chart = LiveChart(ChartsLogic(interval=0.5))
    chart.logic.bind(_Record(tmp_path / "store.sqlite"))
    assert chart.logic.available == ["train/loss_epoch", "eval/accuracy"]
    assert chart.logic.metric == "eval/accuracy"
    assert chart.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = chart.image.value
    chart.metric.value = "train/loss_epoch"
    chart.logic.throttle.flush()
    assert chart.image.value != first and chart.logic.metric == "train/loss_epoch"
    renders = chart.logic.renders
    for _ in range(20):
        chart.logic.on_message({"type": "epoch", "model": "a@digits", "epoch": 4, "metrics": {}})
    deadline = time.monotonic() + 60  # the trailing redraw runs on a timer: late on a loaded machine
    while chart.logic.renders == renders and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # room for any further redraw to show up
    assert 1 <= chart.logic.renders - renders <= 2


def _store(path, rows):
    store = RunStore(path)
    store.add_metrics(rows)
    store.flush()
    store.close()
    return _Record(path)


def test_one_epoch_reads_as_a_whole_number_on_the_x_axis(tmp_path):
    from widgets._charts import chart_figure

    record = _store(tmp_path / "store.sqlite", [("a@digits", 1, 10, "eval/accuracy", 0.8, 1.0),
                                                 ("b@digits", 1, 10, "eval/accuracy", 0.7, 1.0)])
    fig = chart_figure(record.metrics(), "eval/accuracy")
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    ticks = [x for x in ax.get_xticks() if low <= x <= high]
    assert 1 in ticks and all(float(x).is_integer() for x in ticks), ticks


def test_the_default_metric_is_the_same_whatever_arrives_first_and_a_pick_is_kept(tmp_path):
    from widgets._charts import default_metric

    assert default_metric(["train/loss_epoch", "eval/zeta", "eval/accuracy"]) == "eval/accuracy"
    assert default_metric(["eval/win_rate", "eval/h_acyclicity"]) == "eval/h_acyclicity"
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    store.add_metrics([("a@digits", 1, 10, "train/loss_epoch", 1.0, 1.0)])  # the train loss lands first
    store.flush()
    chart = LiveChart(ChartsLogic(interval=0.1))
    chart.logic.bind(_Record(path))
    assert chart.logic.metric == "train/loss_epoch"
    store.add_metrics([("a@digits", 1, 10, "eval/accuracy", 0.8, 1.0), ("a@digits", 1, 10, "eval/loss", 0.5, 1.0)])
    store.flush()
    chart.logic.throttle.flush()
    assert chart.logic.metric == "eval/accuracy" and chart.metric.value == "eval/accuracy"
    chart.metric.value = "eval/loss"  # a person's pick
    store.add_metrics([("a@digits", 2, 20, "eval/accuracy", 0.9, 2.0)])
    store.flush()
    chart.logic.throttle.flush()
    store.close()
    assert chart.logic.metric == "eval/loss" and chart.metric.value == "eval/loss"
