import threading

import pytest

from workbench.errors import StoreError
from workbench.store import RunStore, read_store


def test_writes_from_many_threads_are_all_committed(tmp_path):
    store = RunStore(tmp_path / "store.sqlite", flush_interval=0.05)

    def writer(i):
        for step in range(500):
            store.add_metrics([(f"m{i}", 1, step, "train/loss", float(step), 0.0)])
        store.add_event(f"m{i}", "segment", {"epoch": 1})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    reader = read_store(tmp_path / "store.sqlite")
    metrics = reader.metrics()
    assert len(metrics) == 2000
    assert set(metrics.columns) == {"model", "epoch", "step", "name", "value", "wall_time"}
    events = reader.events(kind="segment")
    assert len(events) == 4 and events["payload"].iloc[0] == {"epoch": 1}
    store.close()


def test_model_state_upsert_and_run_info(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    store.set_model("a", state="running", epoch=1, hparams={"lr": 0.1}, pinned=["lr"])
    store.set_model("a", epoch=2)
    store.set_run(state="finished")
    store.flush()
    reader = read_store(tmp_path / "s.sqlite")
    row = reader.models().iloc[0]
    assert row["state"] == "running" and row["epoch"] == 2 and row["hparams"] == {"lr": 0.1} and row["pinned"] == ["lr"]
    assert reader.run_info() == {"state": "finished"}
    store.close()


def test_filters(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    store.add_metrics([("a", 1, 1, "eval/x", 1.0, 0.0), ("b", 1, 1, "eval/y", 2.0, 0.0), ("a", 1, 1, "train/z", 3.0, 0.0)])
    store.flush()
    reader = read_store(tmp_path / "s.sqlite")
    assert list(reader.metrics(model="a")["name"]) == ["eval/x", "train/z"]
    assert list(reader.metrics(name="eval/%")["model"]) == ["a", "b"]
    store.close()


def _plan(path, sql: str, params: tuple) -> str:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()


def _population(path, models: int = 3, epochs: int = 4, steps: int = 5) -> None:
    store = RunStore(path)
    for m in range(models):
        rows = []
        for e in range(1, epochs + 1):
            rows += [(f"m{m}", e, (e - 1) * steps + s, "train/loss", float(100 * m + 10 * e + s), float(e))
                     for s in range(steps)]
            rows.append((f"m{m}", e, e * steps, "eval/acc", e / 10 + m, float(e)))
        store.add_metrics(rows)
    store.add_event("m0", "segment", {"epoch": 1})
    store.flush()
    store.close()


def test_reads_by_name_kind_and_model_use_an_index_without_sorting(tmp_path):
    path = tmp_path / "s.sqlite"
    _population(path)
    reader = read_store(path)
    by_name = _plan(path, *reader._metrics_sql(["value"], None, "train/loss"))
    assert "USING INDEX metrics_name" in by_name and "TEMP B-TREE" not in by_name  # write order for free
    assert "USING INDEX" in _plan(path, *reader._metrics_sql(["value"], "m1", "train/loss"))
    assert "USING INDEX metrics_name" in _plan(path, *reader._metrics_sql(["value"], None, "eval/%"))
    assert "USING INDEX metrics_name" in _plan(path, *reader._epoch_series_sql("train/loss", None))
    assert "events_kind" in _plan(path, "SELECT * FROM events WHERE kind = ? ORDER BY rowid", ("segment",))


def test_narrow_reads_return_what_a_full_read_filtered_would(tmp_path):
    import pandas as pd

    path = tmp_path / "s.sqlite"
    _population(path)
    reader = read_store(path)
    everything = reader.metrics()
    for model, name in ((None, "train/loss"), ("m2", "eval/acc"), ("m1", None), (None, "eval/%")):
        mask = pd.Series(True, index=everything.index)
        if model:
            mask &= everything["model"] == model
        if name:
            mask &= everything["name"].str.startswith(name.rstrip("%")) if "%" in name else everything["name"] == name
        expected = everything[mask].reset_index(drop=True)
        got = reader.metrics(model=model, name=name)
        assert list(got.columns) == list(expected.columns)
        assert got.astype(str).equals(expected.astype(str)), (model, name)
    assert reader.metrics(name="nothing").empty
    assert reader.metric_names() == ["eval/acc", "train/loss"]


def test_epoch_series_keeps_the_last_point_of_each_epoch(tmp_path):
    path = tmp_path / "s.sqlite"
    _population(path, models=2, epochs=3, steps=5)
    series = read_store(path).epoch_series("train/loss")
    assert list(series.columns) == ["model", "epoch", "step", "name", "value", "wall_time"]
    assert len(series) == 6
    m1 = series[series["model"] == "m1"]
    assert list(m1["epoch"]) == [1, 2, 3]
    assert list(m1["step"]) == [4, 9, 14]  # the last step of each epoch
    assert list(m1["value"]) == [114.0, 124.0, 134.0]


def _awkward_store(path) -> None:
    """Rows that test typing: NaN values (stored as NULL) in a run longer than the ADBC
    driver's batch of 1,024 rows, a metric whose first 1,500 rows are all NaN (nothing to
    infer a type from), a model named with spaces and unicode, metrics interleaved."""
    store = RunStore(path)
    rows = [("m a", 1 + s // 100, s, "train/loss", 2.0 / (1 + s), 1.0 + s) for s in range(1500)]
    rows += [("m a", 1 + s // 100, s, "train/loss", float("nan"), 1.0 + s) for s in range(1500, 3000)]
    rows += [("m a", 1, s, "train/diverged", float("nan") if s < 1500 else 1.0, 1.0 + s) for s in range(2000)]
    rows += [("mé-2", 1 + s // 100, s, name, s * 0.5, 2.0 + s) for s in range(2000) for name in ("train/loss", "eval/acc")]
    store.add_metrics(rows)
    store.flush()
    store.close()


def test_the_arrow_path_returns_the_frame_sqlite3_returns(tmp_path, monkeypatch):
    import pandas as pd

    pytest.importorskip("adbc_driver_sqlite")
    from workbench import _arrow_reads

    path = tmp_path / "s.sqlite"
    _awkward_store(path)
    reader = read_store(path)
    read = reader._metrics_sql(["model", "value"], None, "train/loss")
    assert _arrow_reads.arrow_table(path, *read, {"model": "string", "value": "double"}).num_rows == 5000
    queries = [(None, None), (None, "train/loss"), ("m a", None), ("mé-2", "eval/acc"), (None, "eval/%"),
               ("m%", "train/%"), (None, "train/diverged"), (None, "nothing"), ("nobody", "train/loss")]
    fast = [reader.metrics(model=m, name=n) for m, n in queries]
    monkeypatch.setattr(_arrow_reads, "_driver", False)  # what a machine without the driver reads
    for (model, name), got in zip(queries, fast):
        expected = reader.metrics(model=model, name=name)
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=f"metrics({model!r}, {name!r})")
    assert fast[1]["value"].isna().sum() == 1500 and fast[6]["value"].isna().sum() == 1500


def test_a_store_being_written_is_read_through_sqlite3(tmp_path):
    pytest.importorskip("adbc_driver_sqlite")
    from workbench import _arrow_reads

    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    store.add_metrics([("a", 1, 1, "eval/x", 1.0, 0.0)])
    store.flush()
    sql = ("SELECT value FROM metrics", (), {"value": "double"})
    # A second copy of SQLite in this process must not open a file the writer holds.
    assert _arrow_reads.being_written(path) and _arrow_reads.arrow_table(path, *sql) is None
    assert list(read_store(path).metrics()["value"]) == [1.0]
    store.close()
    assert not _arrow_reads.being_written(path) and _arrow_reads.arrow_table(path, *sql).num_rows == 1


def test_a_store_closed_while_a_reader_holds_it_is_still_left_one_file(tmp_path):
    """A reader (another process polling, `workbench watch`) with the file open as the run
    ends must not leave the finished store in WAL mode: its report would never be kept."""
    import sqlite3
    import threading

    from workbench import _arrow_reads

    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    store.add_metrics([("a", 1, 1, "eval/x", 1.0, 0.0)])
    store.flush()
    reader = sqlite3.connect(path, check_same_thread=False)
    reader.execute("SELECT COUNT(*) FROM metrics").fetchone()  # open, as a poller's connection between reads
    threading.Timer(0.4, reader.close).start()
    store.close()
    assert not _arrow_reads.being_written(path)
    assert list(read_store(path).metrics()["value"]) == [1.0]


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 10, None])
def test_a_damaged_or_missing_store_is_one_line_error(tmp_path, content):
    path = tmp_path / "s.sqlite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StoreError, match="cannot be read"):
        read_store(path).metrics(name="train/loss")


def test_events_of_several_kinds_come_in_write_order_through_the_index(tmp_path):
    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    for i, kind in enumerate(["segment", "hparam", "segment", "paused", "exploit", "segment"]):
        store.add_event("m0", kind, {"i": i}, wall_time=float(i))
    store.flush()
    store.close()
    reader = read_store(path)
    marked = reader.events(kind=("hparam", "paused", "exploit"))
    assert list(marked["kind"]) == ["hparam", "paused", "exploit"]
    assert [p["i"] for p in marked["payload"]] == [1, 3, 4]
    assert reader.events(kind=[]).empty
    assert reader.event_counts().to_dict() == {"segment": 3, "exploit": 1, "hparam": 1, "paused": 1}
    assert list(reader.event_counts().index) == ["segment", "exploit", "hparam", "paused"]  # most first
    where, params = reader._where({"kind": ("hparam", "paused")})
    assert "events_kind" in _plan(path, f"SELECT * FROM events WHERE 1=1{where} ORDER BY rowid", params)


def test_epoch_series_folds_in_only_new_rows_and_matches_a_fresh_read(tmp_path):
    import pandas as pd

    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    live = read_store(path)
    step = 0
    for chunk in range(4):  # each chunk ends mid-epoch: the epoch in progress gets a newer last row
        rows = []
        for _ in range(7):
            rows += [(m, 1 + step // 5, step, "train/loss", float(step * 10 + i), float(step)) for i, m in enumerate("ab")]
            step += 1
        store.add_metrics(rows)
        store.flush()
        got = live.epoch_series("train/loss")
        pd.testing.assert_frame_equal(got, read_store(path).epoch_series("train/loss"))
        assert list(got[got["model"] == "a"]["step"])[-1] == step - 1  # the newest row of the epoch in progress
    assert live._series[("train/loss", None)][0] == 2 * step  # the last rowid folded in
    sql, params = live._epoch_series_sql("train/loss", None, 40)
    assert "rowid>?" in _plan(path, sql, params).replace(" ", "")  # the index range, not a scan
    store.close()
    # Another file at the same path (a run folder re-made): the kept series is dropped.
    path.unlink()
    _population(path, models=1, epochs=2, steps=3)
    assert list(live.epoch_series("train/loss")["step"]) == [2, 5]


def test_epoch_series_of_a_finished_store_is_the_same_through_arrow(tmp_path, monkeypatch):
    import pandas as pd

    pytest.importorskip("adbc_driver_sqlite")
    from workbench import _arrow_reads

    path = tmp_path / "s.sqlite"
    _awkward_store(path)
    _population(tmp_path / "p.sqlite", models=3, epochs=4, steps=5)
    cases = [(path, n, m) for n in ("train/loss", "eval/acc", "train/diverged", "train/%", "nothing")
             for m in (None, "m a", "mé-2")] + [(tmp_path / "p.sqlite", "train/loss", None)]
    assert read_store(path)._epoch_rows_arrow("train/loss", None)  # the Arrow path is taken
    fast = [read_store(p).epoch_series(n, m) for p, n, m in cases]
    monkeypatch.setattr(_arrow_reads, "_driver", False)
    for (p, n, m), got in zip(cases, fast):
        pd.testing.assert_frame_equal(got, read_store(p).epoch_series(n, m), check_exact=True, obj=f"{n} {m}")


def test_the_arrow_path_reads_a_folder_named_with_uri_characters(tmp_path):
    pytest.importorskip("adbc_driver_sqlite")
    from workbench import _arrow_reads

    folder = tmp_path / "run #1 ?x=%20"
    folder.mkdir()
    path = folder / "s.sqlite"
    _population(path, models=1, epochs=2, steps=3)
    table = _arrow_reads.arrow_table(path, "SELECT value FROM metrics", (), {"value": "double"})
    assert table is not None and table.num_rows == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # nothing made beside it
