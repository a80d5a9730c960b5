"""The progress part's rows and title from synthetic states, without a run or a frontend."""
from __future__ import annotations

from widgets import Progress, ProgressLogic


def _row(state="running", waiting=None, epoch=100, rate=1234.5, eta=65.0):
    return {"state": state, "waiting": waiting, "epoch": epoch, "total_epochs": 100, "progress": epoch / 100,
            "steps_per_s": rate, "eta_s": eta, "last_error": None}


def _px(layout) -> int:
    return int(layout.width.removesuffix("px"))


def test_a_waiting_model_says_what_it_waits_for_with_no_rate_or_eta():
    part = Progress(ProgressLogic())
    part.logic.models = {"mlp": _row(waiting="peer cnn (paused)", rate=None, eta=None, epoch=3),
                         "cnn": _row(state="paused", rate=None, eta=None, epoch=3)}
    mlp, cnn = part.widgets["mlp"], part.widgets["cnn"]
    assert "waiting for peer cnn (paused)" in mlp["state"].value and "running" not in mlp["state"].value
    assert mlp["rate"].value == "" and mlp["eta"].value == ""
    assert "paused" in cnn["state"].value and cnn["toggle"].description == "Resume"


def test_epoch_rate_and_eta_labels_do_not_run_together():
    part = Progress(ProgressLogic())
    part.logic.models = {"m": _row()}
    row = part.widgets["m"]
    assert row["epoch"].value == "epoch 100/100" and row["rate"].value == "1234.5 steps/s"
    assert row["eta"].value == "ETA 1m05s"
    for key in ("epoch", "rate", "eta"):  # about 7 px a character at the notebook's font size, and a gap
        label = row[key]
        assert _px(label.layout) >= 7.5 * len(label.value), (key, label.layout.width)
        assert label.layout.margin and label.layout.margin.split()[1] != "0"


def test_the_title_shows_run_elapsed_and_eta():
    logic = ProgressLogic()
    part = Progress(logic)
    assert "elapsed" not in part.title.value
    logic.elapsed_s, logic.run_eta_s = 75.0, 3700.0
    logic.run = type("R", (), {"id": "r1"})()
    logic.run_state = "running"
    assert "elapsed 1m15s" in part.title.value and "ETA 1h01m" in part.title.value


def test_start_is_off_before_the_starting_message_reaches_the_frontend():
    """Widget changes reach the browser in the order they are made: the message saying
    "starting workers" must not arrive while Start can still be clicked."""
    from workbench import WorkbenchError

    def starter():
        raise WorkbenchError("no cluster here")

    part = Progress(ProgressLogic(starter=starter))
    seen = []
    part.message.observe(lambda change: seen.append((change["new"], part.start_button.disabled)), "value")
    part.start_button.click()
    shown = [disabled for message, disabled in seen if "starting workers" in message]
    assert shown and all(shown), seen
    assert "no cluster here" in part.message.value and not part.start_button.disabled


def test_refreshes_from_two_threads_leave_the_newer_reading():
    """The poller, the message throttle and the panel refresh from their own threads: a
    reading taken before a pause must not land after the one that shows its peer waiting."""
    import threading
    from types import SimpleNamespace

    older_reading, release = threading.Event(), threading.Event()
    readings = iter(["before the pause", "after it"])

    class Run:
        id, state = "r1", SimpleNamespace(value="running")

        def snapshot(self):
            which = next(readings)
            if which == "before the pause":
                older_reading.set()
                release.wait(10)
            waiting = None if which == "before the pause" else "peer cnn (paused)"
            model = SimpleNamespace(state=SimpleNamespace(value="running"), waiting=waiting, epoch=3, total_epochs=10,
                                    progress=0.3, steps_per_s=100.0, last_error=None)
            return SimpleNamespace(models={"mlp": model})

        def events(self):
            raise RuntimeError("no store yet")  # read as "no start time yet"

    logic = ProgressLogic()
    logic.run = Run()
    older = threading.Thread(target=logic.refresh)
    older.start()
    assert older_reading.wait(10)
    newer = threading.Thread(target=logic.refresh)
    newer.start()
    newer.join(0.5)  # one refresh at a time: the newer waits for the older one to be applied
    release.set()
    older.join(10)
    newer.join(10)
    assert logic.models["mlp"]["waiting"] == "peer cnn (paused)"
