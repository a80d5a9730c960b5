"""Smoothed steps/s and whole-run ETAs, from synthetic sequences of progress snapshots."""
from __future__ import annotations

import pytest

from widgets._eta import ProgressClock


def _model(epoch, total=10, rate=None, state="running", waiting=None):
    return {"state": state, "epoch": epoch, "total_epochs": total, "steps_per_s": rate, "waiting": waiting}


def test_eta_follows_the_whole_run_pace_waits_included_not_the_last_epoch():
    # Mutual learning: the MLP computes an epoch in 1 s, then waits 4 s for the CNN. The
    # engine's ETA (remaining epochs x 1 s) said 4 s where 20 s were left.
    clock = ProgressClock()
    t = 0.0
    for epoch in range(0, 6):
        clock.observe(t, {"mlp": _model(epoch, rate=250.0)})
        clock.observe(t + 1.0, {"mlp": _model(epoch, rate=250.0, waiting="peer cnn")})  # computed, now waits
        t += 5.0
    clock.observe(t, {"mlp": _model(6, rate=250.0)})
    figures = clock.figures(t)["mlp"]
    assert figures.eta_s == pytest.approx(4 * 5.0)
    # Half-way through the next epoch the countdown has gone down by that half, not up.
    clock.observe(t + 2.5, {"mlp": _model(6, rate=250.0)})
    assert clock.figures(t + 2.5)["mlp"].eta_s == pytest.approx(4 * 5.0 - 2.5)
    assert clock.run_eta(t + 2.5) == pytest.approx(17.5)


def test_steps_per_s_is_smoothed_one_sample_per_epoch():
    clock = ProgressClock()
    clock.observe(0.0, {"m": _model(0)})
    shown = []
    for epoch, rate in enumerate([52.0, 250.0, 52.0, 250.0, 52.0, 250.0, 52.0, 250.0], start=1):
        for repeat in range(3):  # the same snapshot read again: no extra weight
            clock.observe(epoch + repeat / 10, {"m": _model(epoch, rate=rate)})
        shown.append(clock.figures(epoch + 0.2)["m"].steps_per_s)
    assert shown[0] == 52.0
    swings = [abs(b - a) for a, b in zip(shown[3:], shown[4:])]
    assert max(swings) < 0.35 * (250 - 52)  # raw figures swing by 198 steps/s from one epoch to the next
    assert 100 < shown[-1] < 200


def test_a_waiting_or_paused_model_shows_no_rate_and_no_eta_and_a_pause_does_not_slow_the_pace():
    clock = ProgressClock()
    clock.observe(0.0, {"a": _model(0), "b": _model(0)})
    clock.observe(10.0, {"a": _model(1, rate=100.0), "b": _model(1, rate=100.0)})
    # b paused for 100 s; a waits for it all that time.
    clock.observe(10.5, {"a": _model(1, rate=100.0, waiting="peer b (paused)"), "b": _model(1, state="paused")})
    clock.observe(110.5, {"a": _model(1, rate=100.0, waiting="peer b (paused)"), "b": _model(1, state="paused")})
    figures = clock.figures(110.5)
    assert figures["a"].steps_per_s is None and figures["a"].eta_s is None
    assert figures["b"].steps_per_s is None and figures["b"].eta_s is None
    assert clock.run_eta(110.5) is None  # a paused model ends when a person says so
    clock.observe(111.0, {"a": _model(1, rate=100.0), "b": _model(1, rate=100.0)})  # resumed
    clock.observe(120.5, {"a": _model(2, rate=100.0), "b": _model(2, rate=100.0)})
    # Ten seconds an epoch, as before the pause: the 100 s held by the pause do not count.
    assert clock.figures(120.5)["a"].eta_s == pytest.approx(8 * 10.0, rel=0.1)
    assert clock.figures(120.5)["b"].eta_s == pytest.approx(8 * 10.0, rel=0.1)


def test_no_estimate_before_an_epoch_ends_and_none_once_finished():
    clock = ProgressClock()
    clock.observe(0.0, {"m": _model(0, total=2)})
    clock.observe(5.0, {"m": _model(0, total=2)})
    assert clock.figures(5.0)["m"].eta_s is None and clock.run_eta(5.0) is None
    clock.observe(10.0, {"m": _model(1, total=2, rate=80.0)})
    assert clock.figures(10.0)["m"].eta_s == pytest.approx(10.0)
    clock.observe(20.0, {"m": _model(2, total=2, rate=80.0, state="finished")})
    assert clock.figures(20.0)["m"].eta_s is None and clock.figures(20.0)["m"].steps_per_s is None
    assert clock.run_eta(20.0) is None
