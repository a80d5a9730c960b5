"""Read benchmarks: a run with about 1,000,000 metric points, read the ways users read it.

    python benchmarks/reads.py [--points 1000000] [--models 8] [--quick]

The store is written with the store API itself (``RunStore.add_metrics``/``add_event``),
as a run of ``--models`` digits trainers would write it: a ``train/loss`` point every step,
the per-epoch ``train/loss_epoch`` and three ``eval/`` metrics every epoch. Then it times,
each as the best of three:

1. ``run.metrics(name="train/loss")`` (the per-step series, every point) and
   ``run.metrics(name="eval/accuracy")`` (a narrow series out of the million);
2. the live chart's refresh: the metric names, one metric's series, the PNG;
3. ``write_report`` (``workbench report``'s work in process) and the CLI end to end
   (interpreter start and imports included).

Bar (docs/benchmarks.md): each under 1 s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_run(root: Path, points: int, models: int, steps_per_epoch: int = 100) -> Path:
    """A finished run directory whose store holds ``points`` per-step points and per-epoch rows."""
    from workbench.store import RunStore

    run_dir = root / "reads-run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "preset.json").write_text(json.dumps({"epochs": 1, "target_models": ["digits_mlp"]}))
    store = RunStore(run_dir / "store.sqlite")
    steps = points // models
    epochs = max(1, steps // steps_per_epoch)
    now = time.time()
    store.add_event(None, "started", {"models": [f"digits_mlp@digits#{i}" for i in range(models)]}, now)
    for i in range(models):
        name = f"digits_mlp@digits#{i}"
        rows = [(name, 1 + s // steps_per_epoch, s, "train/loss", 2.3 / (1 + s / 500) + (s % 7) * 0.01,
                 now + s * 0.002) for s in range(steps)]
        for e in range(1, epochs + 1):
            t = now + e * steps_per_epoch * 0.002
            rows += [(name, e, e * steps_per_epoch, "train/loss_epoch", 2.3 / (1 + e), t),
                     (name, e, e * steps_per_epoch, "eval/accuracy", 1 - 0.9 / (1 + e), t),
                     (name, e, e * steps_per_epoch, "eval/loss", 2.3 / (1 + e), t),
                     (name, e, e * steps_per_epoch, "eval/nll", 2.2 / (1 + e), t)]
            store.add_event(name, "segment", {"epoch": e, "step": e * steps_per_epoch}, t)
        store.add_metrics(rows)
        store.set_model(name, registry_name="digits_mlp", dataset="digits", state="finished", epoch=epochs,
                        total_epochs=epochs, hparams={"lr": 0.01}, pinned=[])
    store.add_event(None, "finished", {}, now + steps * 0.002)
    store.set_run(state="finished", started=now, finished=now + steps * 0.002)
    store.flush(timeout=600)
    store.close()
    return run_dir


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200,000 points instead of a million")
    args = parser.parse_args()
    points = 200_000 if args.quick else args.points
    from workbench.handles import RunRecord
    from workbench.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        run_dir = make_run(root, points, args.models)
        run = RunRecord(run_dir)
        total = int(run._reader._query("SELECT COUNT(*) AS n FROM metrics")["n"].iloc[0])
        size = (run_dir / "store.sqlite").stat().st_size / 2**20
        print(f"store: {total:,} metric points, {size:.0f} MiB, written in {time.perf_counter() - t0:.1f} s")
        s, frame = best_of(lambda: run.metrics(), repeat=1)
        print(f"[0] before (what the chart and the report read on every refresh until now): run.metrics(), "
              f"{len(frame):,} rows in {s:.3f} s")
        s, frame = best_of(lambda: run.metrics(name="train/loss"))
        print(f"[1] run.metrics(name='train/loss'): {len(frame):,} rows in {s:.3f} s")
        s, frame = best_of(lambda: run.metrics(name="eval/accuracy"))
        print(f"    run.metrics(name='eval/accuracy'): {len(frame):,} rows in {s:.3f} s")
        s, frame = best_of(lambda: run.metrics(model="digits_mlp@digits#0", name="train/loss"))
        print(f"    run.metrics(model=..., name='train/loss'): {len(frame):,} rows in {s:.3f} s")
        try:
            from widgets._charts import ChartsLogic
        except ImportError:  # the widgets extra is not installed
            print("[2] live chart: skipped (ipywidgets not installed)")
        else:
            for metric in ("eval/accuracy", "train/loss"):
                logic = ChartsLogic(metric=metric)
                logic.run = run
                s, _ = best_of(logic.render)
                print(f"[2] live chart refresh ({metric}): {s:.3f} s, {len(logic.png):,} bytes of PNG")
        s, _ = best_of(lambda: write_report(run_dir, root / "report"))
        print(f"[3] write_report (workbench report's work): {s:.3f} s")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "workbench", "report", run_dir.name, "--runs-dir", str(root),
                        "--out", str(root / "report-cli")], check=True, capture_output=True)
        print(f"    `workbench report` end to end (a new interpreter, imports included): "
              f"{time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
