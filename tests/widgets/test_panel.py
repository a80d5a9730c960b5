"""The whole panel against real runs (in-process Dask workers): buttons clicked and
sliders moved from code, and the engine's store checked for what they did."""
from __future__ import annotations

import time

import pytest

import workbench as wb
from widgets import ControlPanel

pytestmark = pytest.mark.slow

MLP, CNN = "digits_mlp@digits", "digits_cnn@digits"


def _until(condition, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kinds(run, kind):
    return [p for p in wb.open_run(run.id, run.dir.parent).events(kind)["payload"]]


@pytest.mark.parametrize("detach", [True, False], ids=["own-driver", "kernel-driver"])
def test_panel_starts_steers_and_shows_results(tmp_path, inprocess_scheduler, detach):
    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 3}, runs_dir=tmp_path,
                         scheduler=inprocess_scheduler, chart_interval=0.3, detach=detach)
    assert panel.presets.logic.overrides() == {"epochs": 3}
    panel.progress.start_button.click()
    run = panel.run
    assert isinstance(run, wb.Run) and panel.tabs.selected_index == 1
    assert set(panel.tuning.logic.schemas) == {MLP, CNN}
    slider = panel.tuning.controls[(MLP, "lr")]
    assert type(slider).__name__ == "FloatLogSlider" and not slider.disabled

    slider.value = 0.01  # as if dragged by hand
    assert "pinned" in panel.tuning.pins[(MLP, "lr")].value
    assert not panel.tuning.release_buttons[(MLP, "lr")].disabled
    _until(lambda: any(p["name"] == "lr" for p in _kinds(run, "hparam")), what="the hparam event")

    panel.progress.widgets[CNN]["toggle"].click()  # pause the CNN
    _until(lambda: _kinds(run, "paused"), what="the pause")
    _until(lambda: panel.progress.logic.models[CNN]["state"] == "paused", 10, "the paused row")
    assert panel.progress.widgets[CNN]["toggle"].description == "Resume"
    panel.progress.widgets[CNN]["toggle"].click()
    _until(lambda: _kinds(run, "resumed_model"), what="the resume")
    panel.tuning.release_buttons[(MLP, "lr")].click()
    assert panel.tuning.pins[(MLP, "lr")].value == ""

    assert run.wait(300) == wb.RunState.FINISHED
    # The Results tab fills in, then opens: both after the run ends, on the panel's thread.
    _until(lambda: panel.results.logic.charts and panel.tabs.selected_index == 2, 60, "the results")
    change = next(p for p in _kinds(run, "hparam") if p["name"] == "lr")
    assert change["source"] == "user" and change["new"] == pytest.approx(0.01) and change["pinned"]
    # It reached the trainer: mid-segment (an hparam_applied event), or with the next segment.
    models = wb.open_run(run.id, tmp_path).models().set_index("model")
    assert (any(p.get("id") == change["id"] for p in _kinds(run, "hparam_applied"))
            or models.loc[MLP, "hparams"]["lr"] == pytest.approx(0.01))
    assert [p["name"] for p in _kinds(run, "release")] == ["lr"]
    assert _kinds(run, "paused")[0]["epoch"] < 3
    assert panel.tabs.selected_index == 2
    assert {m["state"] for m in panel.progress.logic.models.values()} == {"finished"}
    assert panel.charts.logic.renders >= 1 and panel.charts.image.value[:4] == b"\x89PNG"
    assert "eval/accuracy" in panel.results.logic.charts and "digits_cnn@digits" in panel.results.logic.table_html
    assert (run.dir / "report" / "report.html").exists()
    assert panel.tuning.controls[(MLP, "lr")].disabled  # a finished run is not steerable

    # A controller's change shows up in the controls without being sent back as a user change.
    before = len(_kinds(run, "hparam"))
    panel.tuning.logic.on_message({"type": "event", "model": CNN, "kind": "hparam", "payload": {
        "name": "lr", "old": 0.003, "new": 0.0015, "source": "controller", "epoch": 3, "pinned": False}})
    assert panel.tuning.controls[(CNN, "lr")].value == pytest.approx(0.0015)
    assert "controller" in panel.tuning.change_log.value
    assert len(_kinds(run, "hparam")) == before

    # Attaching by id from a fresh panel reads the finished run back.
    other = ControlPanel(preset="digits_mutual", runs_dir=tmp_path)
    other.attach_id.value = run.id
    other.attach_button.click()
    assert other.run.id == run.id and other.results.logic.charts.keys() == panel.results.logic.charts.keys()


@pytest.mark.parametrize("detach", [True, False], ids=["own-driver", "kernel-driver"])
def test_stop_all_then_resume_the_past_run(tmp_path, inprocess_scheduler, detach):
    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 3, "checkpoint_interval": 1},
                         runs_dir=tmp_path, scheduler=inprocess_scheduler, chart_interval=0.3, detach=detach)
    run = panel.start()
    _until(lambda: len(_kinds(run, "checkpoint")) >= 2, what="the first checkpoints")
    panel.progress.stop_button.click()
    assert run.wait(120) == wb.RunState.STOPPED
    _until(lambda: panel.progress.logic.run_state == "stopped", 10, "the stopped state")
    panel.progress.refresh_past_button.click()
    assert run.id in panel.progress.past.options
    panel.progress.past.value = run.id
    panel.progress.resume_run_button.click()
    resumed = panel.run
    assert isinstance(resumed, wb.Run) and resumed is not run and resumed.id == run.id
    assert resumed.wait(300) == wb.RunState.FINISHED
    assert _kinds(resumed, "resumed")
    _until(lambda: {m["epoch"] for m in panel.progress.logic.models.values()} == {3}, 30, "all epochs")


def test_after_a_run_ends_the_panel_starts_a_second_one(tmp_path, inprocess_scheduler):
    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 2}, runs_dir=tmp_path,
                         scheduler=inprocess_scheduler, chart_interval=0.3, detach=False)
    first = panel.start()
    progress = panel.progress
    assert progress.start_button.disabled and not progress.stop_button.disabled
    panel.tuning.controls[(MLP, "lr")].value = 0.01  # pinned: its Release button is on while the run goes
    assert not panel.tuning.release_buttons[(MLP, "lr")].disabled
    assert first.wait(300) == wb.RunState.FINISHED
    _until(lambda: panel.results.logic.charts, 60, "the results")
    assert not progress.start_button.disabled, "Start must be usable again once the run has ended"
    assert progress.stop_button.disabled and all(b.disabled for b in panel.tuning.release_buttons.values())

    progress.start_button.click()
    second = panel.run
    assert second.id != first.id and progress.start_button.disabled
    assert second.wait(300) == wb.RunState.FINISHED
    _until(lambda: panel.results.logic.run is second, 60, "the second run's results")
    assert not progress.start_button.disabled and progress.stop_button.disabled
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "store.sqlite").exists()) == sorted([first.id, second.id])


def test_start_shows_it_is_starting_at_once_and_a_double_click_starts_one_run(tmp_path, inprocess_scheduler):
    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 1}, runs_dir=tmp_path,
                         scheduler=inprocess_scheduler, detach=False)
    progress = panel.progress
    start, seen = progress.logic.starter, []

    def starter():  # the real starter, with a look at the panel while the cluster starts
        seen.append((progress.start_button.disabled, progress.message.value))
        progress.start_button.click()  # the second click of a double click arrives mid-start
        return start()

    progress.logic.starter = starter
    switched = []  # Start's every change while the click is handled: off, and never back on before the run is live

    def record(change):
        switched.append(change["new"])

    progress.start_button.observe(record, "disabled")
    progress.start_button.click()
    progress.start_button.unobserve(record, "disabled")
    assert seen == [(True, seen[0][1])] and "starting workers" in seen[0][1]
    assert switched == [True] and panel.run is not None
    assert panel.run.wait(300) == wb.RunState.FINISHED
    assert [p.name for p in tmp_path.iterdir() if (p / "store.sqlite").exists()] == [panel.run.id]
    assert "starting workers" not in progress.message.value


def test_a_panel_attached_in_the_first_seconds_gets_its_tuning_controls(tmp_path, inprocess_scheduler):
    run = wb.start_run("digits_mutual", {"epochs": 3}, tmp_path, inprocess_scheduler, detach=True)
    panel = ControlPanel(runs_dir=tmp_path)
    panel.attach(run.id)  # at once: the driver may not have built a model yet
    try:
        _until(lambda: set(panel.tuning.logic.schemas) == {MLP, CNN}, 120, "the tuning controls")
        assert (MLP, "lr") in panel.tuning.controls and not panel.tuning.controls[(MLP, "lr")].disabled
    finally:
        run.stop()
    assert run.wait(120).is_finished()


@pytest.mark.parametrize("detach", [True, False], ids=["own-driver", "kernel-driver"])
def test_a_paused_models_partner_reads_waiting_for_it(tmp_path, inprocess_scheduler, detach):
    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 30}, runs_dir=tmp_path,
                         scheduler=inprocess_scheduler, chart_interval=0.3, detach=detach)
    run = panel.start()
    try:
        _until(lambda: panel.progress.logic.models.get(MLP, {}).get("epoch", 0) >= 1, 120, "the first epoch")
        panel.progress.widgets[CNN]["toggle"].click()  # pause the CNN: the MLP must wait for it
        mlp = panel.progress.widgets[MLP]
        _until(lambda: panel.progress.logic.models[MLP].get("waiting") == f"peer {CNN} (paused)", 60,
               "the MLP waiting for its paused peer")
        _until(lambda: "waiting for peer" in mlp["state"].value, 10, "the waiting row")
        assert f"waiting for peer {CNN} (paused)" in mlp["state"].value and "running" not in mlp["state"].value
        assert mlp["rate"].value == "" and mlp["eta"].value == ""
        assert panel.progress.logic.run_eta_s is None and panel.progress.logic.elapsed_s > 0
        # Any reader of the store sees it too: the driver publishes it in the models table.
        _until(lambda: wb.open_run(run.id, tmp_path).snapshot().models[MLP].waiting == f"peer {CNN} (paused)", 10,
               "the waiting reason in the store")
        panel.progress.widgets[CNN]["toggle"].click()  # resume: the MLP trains again
        _until(lambda: panel.progress.logic.models[MLP]["epoch"] >= 3, 120, "training after the resume")
    finally:
        run.stop()
    assert run.wait(120) == wb.RunState.STOPPED


def test_a_learning_rate_set_in_the_setup_form_is_the_runs(tmp_path, inprocess_scheduler):
    import json

    panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 1}, runs_dir=tmp_path,
                         scheduler=inprocess_scheduler, detach=False)
    panel.presets.hparam_controls[("digits_mlp", "lr")].value = 0.01  # as if dragged in the Setup tab
    run = panel.start()
    assert run.wait(300) == wb.RunState.FINISHED
    preset = json.loads((run.dir / "preset.json").read_text())
    assert preset["models"]["digits_mlp"]["hyperparameters"]["lr"] == pytest.approx(0.01)
    hparams = wb.open_run(run.id, tmp_path).models().set_index("model")["hparams"]
    assert hparams[MLP]["lr"] == pytest.approx(0.01) and hparams[CNN]["lr"] == pytest.approx(0.003)
