import threading

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
