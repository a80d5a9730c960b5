import numpy as np

from workbench.report import downsample


def test_a_short_series_is_drawn_as_it_is():
    x, y = np.arange(50), np.random.default_rng(0).normal(size=50)
    dx, dy = downsample(x, y, buckets=100)
    assert np.array_equal(dx, x) and np.array_equal(dy, y)


def test_downsampling_keeps_first_last_and_every_extreme():
    rng = np.random.default_rng(1)
    y = rng.normal(size=100_000)
    y[12_345], y[77_777] = 50.0, -50.0  # one spike up, one down: every-k-th sampling would lose them
    x = np.arange(len(y)) * 2
    dx, dy = downsample(x, y, buckets=500)
    assert len(dy) <= 2 * 500 + 2
    assert (dx[0], dy[0]) == (x[0], y[0]) and (dx[-1], dy[-1]) == (x[-1], y[-1])
    assert dy.max() == 50.0 and dy.min() == -50.0
    assert 12_345 * 2 in dx and 77_777 * 2 in dx
    assert np.all(np.diff(dx) > 0)  # in order, no point twice
    assert np.array_equal(dy, y[dx // 2])  # real points, not averages


def test_each_bucket_keeps_its_own_min_and_max():
    y = np.sin(np.linspace(0, 20 * np.pi, 10_000))
    dx, dy = downsample(np.arange(len(y)), y, buckets=100)
    for lo in range(0, 10_000, 1_000):  # every stretch of ten buckets still reaches both peaks
        part = dy[(dx >= lo) & (dx < lo + 1_000)]
        assert part.max() > 0.99 and part.min() < -0.99


def _frame(names, models=("a", "b"), epochs=6):
    import pandas as pd

    rows = [(m, e, e * 10, n, (i + 1) * e / (j + 1), float(e)) for j, m in enumerate(models) for e in range(1, epochs + 1)
            for i, n in enumerate(names)]
    return pd.DataFrame(rows, columns=["model", "epoch", "step", "name", "value", "wall_time"])


def _pixels(png: bytes):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def _found_in(block, image) -> bool:
    """Whether ``block`` (rows x columns x RGBA) appears in ``image`` exactly, anywhere."""
    from numpy.lib.stride_tricks import sliding_window_view

    k = int(np.argmax((block[..., :3] < 250).any(axis=2).sum(axis=1)))  # its busiest row: few false starts
    for r in range(k, image.shape[0] - block.shape[0] + k + 1):
        windows = sliding_window_view(image[r], block[k].shape)[:, 0]
        for c in np.flatnonzero((windows == block[k]).all(axis=(1, 2))):
            if (image[r - k:r - k + block.shape[0], c:c + block.shape[1]] == block).all():
                return True
    return False


def test_each_panel_is_cut_from_the_one_render_with_the_legend_below():
    from workbench.charts import figure_and_panel_pngs, figure_png, run_figure

    names = ["train/loss_epoch", "eval/accuracy", "eval/loss"]
    metrics = _frame(names)
    full, panels = figure_and_panel_pngs(run_figure(metrics, names))
    image = _pixels(full)
    assert image.shape == _pixels(figure_png(run_figure(metrics, names))).shape  # as savefig draws it
    assert len(panels) == len(names)
    crops = [_pixels(p) for p in panels]
    assert len({c.tobytes() for c in crops}) == 3
    for crop in crops:
        assert crop.shape[0] < image.shape[0] and crop.shape[1] < image.shape[1]
        assert _found_in(crop[:40], image)  # the panel's top (title, frame) as the full image has it
    # the legend (every model named) is drawn below each panel: not white at the bottom
    assert (crops[0][-25:, :, :3] < 200).any()


def _finished_run(root, epochs: int = 3):
    import json

    from workbench.store import RunStore

    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "preset.json").write_text(json.dumps({"name": "t", "epochs": epochs}))
    store = RunStore(run_dir / "store.sqlite")
    store.set_run(state="finished", started=1.0, finished=2.0)
    store.set_model("a", state="finished", epoch=epochs, total_epochs=epochs)
    store.add_metrics([("a", e, e, name, 1.0 / e, float(e)) for e in range(1, epochs + 1)
                       for name in ("eval/accuracy", "train/loss_epoch")])
    store.flush()
    store.close()
    return run_dir


def test_a_finished_runs_report_is_made_once_until_something_it_shows_changes(tmp_path, monkeypatch):
    from workbench import charts, report
    from workbench.store import RunStore

    run_dir = _finished_run(tmp_path)
    renders = []
    real = charts.figure_and_panel_pngs
    monkeypatch.setattr(charts, "figure_and_panel_pngs", lambda fig: renders.append(1) or real(fig))
    first = report.write_report(run_dir)
    assert len(renders) == 1 and (run_dir / "report" / ".report.json").is_file()
    assert report.write_report(run_dir) == first and len(renders) == 1  # nothing changed: the files as they are
    (run_dir / "report" / "eval_accuracy.png").unlink()  # a file gone: made again
    assert report.write_report(run_dir) == first and len(renders) == 2
    assert first["eval_accuracy.png"].is_file()
    store = RunStore(run_dir / "store.sqlite")  # the run resumed: its store is being written
    store.add_metrics([("a", 4, 4, "eval/accuracy", 0.2, 4.0)])
    store.flush()
    report.write_report(run_dir)
    report.write_report(run_dir)
    assert len(renders) == 4  # never kept while the store is written
    store.close()
    report.write_report(run_dir)  # the store changed since the last kept report
    assert len(renders) == 5
    report.write_report(run_dir, tmp_path / "elsewhere")  # another folder has no report yet
    assert len(renders) == 6


def test_an_unfinished_runs_report_is_always_made_afresh(tmp_path, monkeypatch):
    from workbench import charts, report
    from workbench.store import RunStore

    run_dir = _finished_run(tmp_path)
    store = RunStore(run_dir / "store.sqlite")
    store.set_run(state="running")
    store.close()
    renders = []
    real = charts.figure_and_panel_pngs
    monkeypatch.setattr(charts, "figure_and_panel_pngs", lambda fig: renders.append(1) or real(fig))
    report.write_report(run_dir)
    report.write_report(run_dir)
    assert len(renders) == 2 and not (run_dir / "report" / ".report.json").exists()


def test_a_change_in_place_that_keeps_the_stores_size_and_time_is_seen(tmp_path, monkeypatch):
    import os
    import sqlite3

    from workbench import charts, report

    run_dir = _finished_run(tmp_path)
    report.write_report(run_dir)
    store = run_dir / "store.sqlite"
    before = store.stat()
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE models SET state = 'failed'")
    conn.close()
    os.utime(store, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.stat().st_size == before.st_size and store.stat().st_mtime_ns == before.st_mtime_ns
    renders = []
    real = charts.figure_and_panel_pngs
    monkeypatch.setattr(charts, "figure_and_panel_pngs", lambda fig: renders.append(1) or real(fig))
    report.write_report(run_dir)
    assert renders == [1]
