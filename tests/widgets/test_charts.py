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
    """What the chart reads from a run: its metric names and one metric's per-epoch series."""

    def __init__(self, path):
        from workbench.store import read_store

        self.reader = read_store(path)
        self.id = "hand-written"

    def metric_names(self):
        return self.reader.metric_names()

    def epoch_series(self, name):
        return self.reader.epoch_series(name)


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
    time.sleep(1.0)
    assert 1 <= chart.logic.renders - renders <= 2
