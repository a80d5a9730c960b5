"""How far off the panel's ETA and steps/s are on a real run (prints figures; not a test).

Runs a mutual-learning preset (two digits classifiers learning from each other, so one
waits for the other every epoch) with a slowed-down partner, samples the run every half
second as the panel does, and afterwards compares each ETA shown with the time each model
really needed to the end. Two estimates side by side: the engine's (remaining epochs x
last epoch's compute time, what the panel showed before) and the panel's
:class:`widgets._eta.ProgressClock` (the whole run's pace, waits included). Also how much
steps/s changes from one epoch to the next, raw and smoothed.

Usage::

    PYTHONPATH=. python benchmarks/progress_eta.py [--preset digits_mutual] [--epochs 12]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import workbench as wb
from widgets._eta import ProgressClock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="digits_mutual")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between samples")
    args = parser.parse_args()
    # The CNN on a smaller batch: several times slower per epoch, so the MLP waits for it.
    overrides = {"epochs": args.epochs, "models.digits_cnn.hyperparameters.batch_size": 8}
    with tempfile.TemporaryDirectory() as runs:
        run = wb.start_run(args.preset, overrides, runs)
        clock = ProgressClock()
        samples: list[tuple[float, dict, dict]] = []  # (time, engine ETAs, clock ETAs)
        raw_rates: dict[str, list[float]] = {}
        shown_rates: dict[str, list[float]] = {}
        ended: dict[str, float] = {}
        last_epoch: dict[str, int] = {}
        while not run.done:
            now = time.time()
            snaps = run.snapshot().models
            models = {n: {"state": s.state.value, "epoch": s.epoch, "total_epochs": s.total_epochs,
                          "steps_per_s": s.steps_per_s, "waiting": s.waiting} for n, s in snaps.items()}
            clock.observe(now, models)
            figures = clock.figures(now)
            engine = {n: s.eta_s for n, s in snaps.items() if s.state.value == "running" and s.eta_s}
            ours = {n: f.eta_s for n, f in figures.items() if f.eta_s is not None}  # what the panel shows
            samples.append((now, engine, ours))
            for n, s in snaps.items():
                if s.epoch != last_epoch.get(n) and s.steps_per_s:
                    last_epoch[n] = s.epoch
                    raw_rates.setdefault(n, []).append(s.steps_per_s)
                    if figures[n].steps_per_s is not None:
                        shown_rates.setdefault(n, []).append(figures[n].steps_per_s)
                if s.state.is_finished() and n not in ended:
                    ended[n] = now
            time.sleep(args.sample)
        run.wait()
        for n, s in run.snapshot().models.items():
            ended.setdefault(n, time.time())
    print(f"preset {args.preset}, {args.epochs} epochs, digits_cnn batch_size 8; {len(samples)} samples")
    for name in sorted(ended):
        for label, index in (("engine (last epoch)", 1), ("panel (whole run)", 2)):
            ratios = [(ended[name] - t) / eta[name] for t, *etas in samples for eta in [etas[index - 1]]
                      if eta.get(name) and ended[name] - t > 1.0]
            if ratios:
                print(f"{name:22s} {label:20s} needed/said: median {statistics.median(ratios):5.2f}"
                      f"  (p10 {sorted(ratios)[len(ratios) // 10]:5.2f}, p90 {sorted(ratios)[len(ratios) * 9 // 10]:5.2f},"
                      f" n={len(ratios)})")
        for label, rates in (("raw", raw_rates.get(name, [])), ("smoothed", shown_rates.get(name, []))):
            steps = [abs(b - a) for a, b in zip(rates, rates[1:])]
            if steps:
                print(f"{name:22s} steps/s {label:9s} epoch-to-epoch change: median {statistics.median(steps):6.1f},"
                      f" max {max(steps):6.1f} (range {min(rates):.0f}-{max(rates):.0f})")


if __name__ == "__main__":
    main()
