"""Read benchmarks: a run with about 1,000,000 metric points, read the ways users read it.

    python benchmarks/reads.py [--points 1000000] [--models 8] [--quick]

The store is written with the store API itself (``RunStore.add_metrics``/``add_event``),
as a run of ``--models`` digits trainers would write it: a ``train/loss`` point every step,
the per-epoch ``train/loss_epoch`` and three ``eval/`` metrics every epoch. Then it times,
each as the best of three:

1. ``run.metrics(name="train/loss")`` (the per-step series, every point) and
   ``run.metrics(name="eval/accuracy")`` (a narrow series out of the million), through
   ``sqlite3`` (before) and through the ADBC driver (after; when it is installed);
2. the live chart: its first draw (a new handle: the metric names, one metric's per-epoch
   series, the PNG) and each refresh after it (the series kept, only new rows read);
3. ``write_report`` (``workbench report``'s work in process) and the CLI end to end
   (interpreter start and imports included), each made, and asked again with nothing
   changed (a finished run's report is kept).

Each figure is wall time and this process's CPU time (the child's for the CLI): on a shared
machine wall time follows the load, so compare CPU. Bar (docs/benchmarks.md): each under 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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


def best_of(fn, repeat: int = 3) -> tuple[float, float, object]:
    """Best wall and best CPU seconds (this process) of ``repeat`` calls, and the last result."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200,000 points instead of a million")
    args = parser.parse_args()
    points = 200_000 if args.quick else args.points
    from workbench import _arrow_reads
    from workbench.handles import RunRecord
    from workbench.report import write_report

    def show(label: str, wall: float, cpu: float, extra: str = "") -> None:
        print(f"{label}: {wall:.3f} s wall, {cpu:.3f} s CPU{extra}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        run_dir = make_run(root, points, args.models)
        run = RunRecord(run_dir)
        total = int(run._reader._query("SELECT COUNT(*) AS n FROM metrics")["n"].iloc[0])
        size = (run_dir / "store.sqlite").stat().st_size / 2**20
        print(f"store: {total:,} metric points, {size:.0f} MiB, written in {time.perf_counter() - t0:.1f} s; {_load()}")
        driver = _arrow_reads._dbapi()
        print(f"ADBC SQLite driver: {'installed' if driver else 'not installed: every read goes through sqlite3'}")
        paths = [("sqlite3 (before)", False), ("ADBC (after)", driver)] if driver else [("sqlite3", False)]
        for label, value in paths:
            _arrow_reads._driver = value
            wall, cpu, frame = best_of(lambda: run.metrics(), repeat=1)
            show(f"[0] {label} run.metrics(), {len(frame):,} rows", wall, cpu)
            for name in ("train/loss", "eval/accuracy"):
                wall, cpu, frame = best_of(lambda: run.metrics(name=name))
                show(f"[1] {label} run.metrics(name={name!r}), {len(frame):,} rows", wall, cpu)
            wall, cpu, frame = best_of(lambda: run.metrics(model="digits_mlp@digits#0", name="train/loss"))
            show(f"    {label} run.metrics(model=..., name='train/loss'), {len(frame):,} rows", wall, cpu)
        _arrow_reads._driver = None  # as a user's process finds it
        try:
            from widgets._charts import ChartsLogic
        except ImportError:  # the widgets extra is not installed
            print("[2] live chart: skipped (ipywidgets not installed)")
        else:
            for metric in ("eval/accuracy", "train/loss"):
                def first():  # a panel opening the run: a new handle, nothing kept yet
                    logic = ChartsLogic(metric=metric, chosen=True)  # chosen: not the default metric
                    logic.run = RunRecord(run_dir)
                    logic.render()
                    return logic
                wall, cpu, logic = best_of(first)
                assert logic.metric == metric
                show(f"[2] live chart, first draw ({metric})", wall, cpu, f", {len(logic.png):,} bytes of PNG")
                logic.render()
                wall, cpu, _ = best_of(logic.render)
                show(f"    live chart, each refresh after ({metric})", wall, cpu)
        folders = iter(range(100))  # a new folder each time: the report made, not the one kept
        wall, cpu, _ = best_of(lambda: write_report(run_dir, root / f"report-{next(folders)}"))
        show("[3] write_report (workbench report's work), made", wall, cpu)
        wall, cpu, _ = best_of(lambda: write_report(run_dir, root / "report-0"))
        show("    write_report again, nothing changed (the report kept)", wall, cpu)

        def cli(out: str) -> tuple[float, float]:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "workbench", "report", run_dir.name, "--runs-dir", str(root),
                            "--out", str(root / out)], check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return time.perf_counter() - t0, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import workbench.cli, matplotlib.figure, pandas"], check=True)
        imports = time.perf_counter() - t0
        show("    `workbench report` end to end (a new interpreter, imports included), made", *cli("report-cli"),
             f"; of which interpreter start + imports alone: {imports:.3f} s wall")
        # What a user meets after a run: `workbench run`, and the detached driver (--detach,
        # the panel's Start), write the report as the run ends; the shell then finds it made.
        show("    `workbench report` again, nothing changed (a run the CLI or a detached driver drove: "
             "its report is made as it ends)", *cli("report-cli"))
        print(_load())


if __name__ == "__main__":
    main()
