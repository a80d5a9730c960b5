"""``workbench`` command line (a contract: docs/contracts.md).

Bad input exits with status 2 and one clear message, never a traceback. Ctrl-C during a
run stops it gracefully (checkpoints kept; ``workbench resume RUN`` continues it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import textwrap
from typing import Any

from .errors import WorkbenchError, clean

__all__ = ["main"]


def _overrides(items: list[str] | None) -> dict[str, Any]:
    from .presets import parse_override

    return dict(parse_override(item) for item in items or [])


def _print_json(data: Any) -> int:
    """``--json``: one document on stdout (times as ISO 8601 with their UTC offset)."""
    print(json.dumps(data, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
    return 0


def _cmd_presets(args) -> int:
    from .listing import preset_records
    from .presets import resolve_preset

    if args.action == "show":
        if not args.name:
            raise WorkbenchError("usage: workbench presets show NAME")
        name, preset = resolve_preset(args.name)
        print(json.dumps({name: preset}, indent=2))
        return 0
    records = preset_records(args.file)
    if args.json:
        return _print_json(records)
    for r in records:
        print(f"{r['name']:24s} {r['description']}")
    return 0


def _cmd_models(args) -> int:
    from .listing import model_records

    records = model_records()
    if args.json:
        return _print_json(records)
    for r in records:
        kind = "controller" if r["role"] == "controller" else ", ".join(r["accepts"])
        print(f"{r['name']:30s} accepts: {kind:28s} live: {', '.join(r['live_hparams'])}")
    return 0


def _cmd_datasets(args) -> int:
    from .listing import dataset_records

    records = dataset_records()
    if args.json:
        return _print_json(records)
    for r in records:
        print(f"{r['name']:16s} {r['kind']:18s} {r['description']}")
    return 0


class _Progress:
    """One line per model, redrawn in place on a terminal; plain lines per epoch otherwise."""

    def __init__(self, run, stream=sys.stdout):
        self.run = run
        self.stream = stream
        self.tty = stream.isatty()
        self.lines = 0
        self.drawn: list[str] = []  # the rows on screen, to rewrite only those that changed
        self.seen: dict[str, int] = {}

    def _line(self, snap, columns: int = 200) -> str:
        """One model's line in at most ``columns - 1`` characters: a line that wrapped would
        break the redraw (the cursor moves up by lines written, not by screen rows)."""
        ev = snap.last_eval
        key = next((k for k in ("eval/accuracy", "eval/one_step_r2", "eval/shd", "eval/win_rate_vs_random",
                                "eval/loss") if k in ev), next(iter(ev), None))
        metric = f"{key}={ev[key]:.4g}" if key else ""
        waiting = snap.waiting if snap.state.value == "running" else None  # between epochs: no pace to show
        speed = f"{snap.steps_per_s:7.1f} st/s" if snap.steps_per_s and not waiting else " " * 12
        eta = (f"eta {snap.eta_s:5.0f}s" if snap.eta_s is not None and not snap.state.is_finished() and not waiting
               else " " * 9)
        state = "waiting" if waiting else snap.state.value
        budget = columns - 1
        # Wide to narrow: full line; no speed; no eta; shorter bar and name; then cut.
        for name_w, bar_w, parts in ((34, 20, [speed, eta, metric]), (34, 20, [eta, metric]), (28, 12, [metric]),
                                     (20, 8, [metric]), (16, 0, [metric])):
            bar = f"[{'#' * int(bar_w * snap.progress)}{'-' * (bar_w - int(bar_w * snap.progress))}]" if bar_w else ""
            head = [f"{snap.instance[:name_w]:{name_w}s}", bar, f"{snap.epoch:3d}/{snap.total_epochs:<3d}",
                    f"{state:8s}"]
            line = " ".join(p for p in head + parts if p).rstrip()
            if len(line) <= budget:
                return line
        return line[:max(budget, 1)]

    def update(self) -> None:
        snaps = self.run.snapshot().models
        if self.tty:
            columns = shutil.get_terminal_size().columns  # read each time: the window may be resized
            if self.lines:
                self.stream.write(f"\x1b[{self.lines}F")
            lines = [self._line(snap, columns) for snap in snaps.values()]
            for i, line in enumerate(lines):
                # An unchanged row is stepped over, not rewritten: with 64 models most rows
                # are the same from one redraw to the next.
                same = i < len(self.drawn) and self.drawn[i] == line
                self.stream.write("\x1b[1E" if same else "\x1b[2K" + line + "\n")
            self.drawn, self.lines = lines, len(lines)
        else:
            for name, snap in snaps.items():
                if self.seen.get(name) != (snap.epoch, snap.state):
                    self.seen[name] = (snap.epoch, snap.state)
                    if snap.epoch or snap.state.is_finished():
                        self.stream.write(self._line(snap) + "\n")
        self.stream.flush()


def _stop_on_signals(run):
    """SIGINT (Ctrl-C), SIGTERM (docker stop, systemd, SLURM) and SIGHUP stop the run at the
    next step boundary, checkpoints kept; a second signal aborts. Returns a restore function."""
    stopping = {"n": 0}

    def on_signal(signum, frame):
        stopping["n"] += 1
        if stopping["n"] > 1:
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping at the next step boundary (again to abort)...",
              file=sys.stderr)
        run.stop()

    signals = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, on_signal) for s in signals}
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


def _follow(run, args, progress) -> Any:
    """Redraw the progress until the run ends; returns its final state."""
    while not run.done:
        if not args.quiet:
            progress.update()
        run.wait(timeout=0.5 if progress.tty else 2.0)
    state = run.wait()
    if not args.quiet:
        progress.update()
    return state


def _summary(run) -> None:
    from .report import summary_table

    table = summary_table(run.metrics(name="eval/%"))  # the eval rows only, not every per-step point
    if not table.empty:
        print("\nfinal evaluation (eval/ metrics):")
        for row in table.to_dict("records"):
            model, epochs = row.pop("model"), row.pop("epochs")
            values = ", ".join(f"{k[5:]}={v:.4g}" for k, v in row.items() if v == v)
            print(textwrap.fill(f"{model} ({epochs} epochs): {values}", subsequent_indent="    ",
                                width=min(120, shutil.get_terminal_size().columns - 1)))


def _drive(run, args) -> int:
    if getattr(args, "detach", False):
        print(f"run {run.id}\ndirectory {run.dir}")
        print(f"driven by a process of its own (log: {run.dir / 'logs' / 'driver.log'})\n"
              f"watch it:  workbench watch {run.id} --runs-dir {run.dir.parent}\n"
              f"steer it:  workbench set|release|pause|continue|stop {run.id} ... --runs-dir {run.dir.parent}")
        return 0
    restore = _stop_on_signals(run)
    try:
        print(f"run {run.id}\ndirectory {run.dir}")
        if run.dashboard_link:
            print(f"dask dashboard {run.dashboard_link}")
        state = _follow(run, args, _Progress(run))
    except BrokenPipeError:  # `workbench run | head`: the reader left, so stop as Ctrl-C would
        _silence_stdout()
        run.stop()
        state = run.wait()
        hint = "" if state.value == "finished" else f"; continue with: workbench resume {run.id} --runs-dir {run.dir.parent}"
        raise WorkbenchError(f"standard output was closed (broken pipe): run {run.id} {state.value}{hint}") from None
    finally:
        restore()
    _summary(run)
    if not args.no_report and state.reportable:
        paths = run.report()
        print(f"\nreport {paths['report.html']}")
    return _ending(run, state)


def _ending(run, state) -> int:
    """The last lines of a run: its state, what failed and why; 0 only when nothing was lost."""
    print(f"\nrun {run.id} {state.value}: {run.dir}")
    for line in run.failures():
        print(f"workbench: {line}", file=sys.stderr)
    if state.value == "stopped":
        print(f"continue with: workbench resume {run.id} --runs-dir {run.dir.parent}")
    return 0 if state.ok else 1


def _cmd_run(args) -> int:
    from .run import start_run

    if args.replay and (args.preset or args.set):
        raise WorkbenchError("--replay re-runs the replayed run's own preset: leave out --preset and --set")
    run = start_run(args.preset or "quick", _overrides(args.set), args.runs_dir, args.scheduler, args.security,
                    run_id=args.run_id, detach=args.detach, replay=args.replay)
    return _drive(run, args)


def _cmd_resume(args) -> int:
    from .run import resume_run

    run = resume_run(args.run, args.runs_dir, _overrides(args.set), args.scheduler, args.security, detach=args.detach,
                     allow_restart=args.allow_restart or ())
    return _drive(run, args)


def _attached(args):
    from .run import attach

    return attach(args.run, args.runs_dir)


def _ack_line(run, command_id: int, op: str, timeout: float) -> str:
    from .channel import wait_for_ack

    seen = wait_for_ack(run.dir / "store.sqlite", command_id, op, timeout)
    if "hparam_applied" in seen:
        return f"applied by the trainer at step {seen['hparam_applied'].get('step')}"
    if "hparam_skipped" in seen:
        return f"skipped: {seen['hparam_skipped'].get('reason')}"
    if seen:
        kind, payload = next(iter(seen.items()))
        where = f" (epoch {payload['epoch']}, step {payload['step']})" if "step" in payload else ""
        return ("in force; the trainer applies it when its next segment starts" if kind == "hparam"
                else f"done{where}")
    return f"queued (command {command_id}); the driver has not taken it within {timeout:g} s"


def _cmd_set(args) -> int:
    from .presets import parse_override

    run = _attached(args)
    for item in args.values:
        name, value = parse_override(item)
        command_id = run.set_hparam(args.model, name, value, pin=not args.no_pin)
        print(f"{args.model} {name}={value!r}: {_ack_line(run, command_id, 'set', args.timeout)}")
    return 0


def _cmd_release(args) -> int:
    run = _attached(args)
    command_id = run.release(args.model, args.name)
    print(f"{args.model} {args.name} released to the controller: {_ack_line(run, command_id, 'release', args.timeout)}")
    return 0


def _cmd_pause(args) -> int:
    run = _attached(args)
    command_id = run.pause(args.model)
    print(f"pause {args.model or 'all models'}: {_ack_line(run, command_id, 'pause', args.timeout)}")
    return 0


def _cmd_continue(args) -> int:
    run = _attached(args)
    command_id = run.resume_model(args.model)
    print(f"continue {args.model or 'all models'}: {_ack_line(run, command_id, 'resume', args.timeout)}")
    return 0


def _cmd_stop(args) -> int:
    run = _attached(args)
    command_id = run.stop()
    print(f"stop {run.id}: {_ack_line(run, command_id, 'stop', args.timeout)}")
    if args.wait:
        state = run.wait()
        print(f"run {run.id} {state.value}")
    return 0


def _cmd_watch(args) -> int:
    """The live progress of a run driven anywhere; Ctrl-C stops watching, not the run."""
    run = _attached(args)
    print(f"run {run.id}: {run.state.value}\ndirectory {run.dir}")
    try:
        state = _follow(run, args, _Progress(run))
    except KeyboardInterrupt:
        print(f"\nstopped watching; the run goes on (stop it with `workbench stop {run.id}`)")
        return 0
    _summary(run)
    return _ending(run, state)


def _cmd_status(args) -> int:
    import pandas as pd

    from .listing import format_time, run_detail, run_records

    if args.run:
        detail = run_detail(args.run, args.runs_dir)
        if args.json:
            return _print_json(detail)
        print(f"run {detail['run']}: {detail['state']}, started {format_time(detail['started'])}")
        frame = pd.DataFrame(detail["models"], columns=["model", "state", "epoch", "total_epochs", "last_error"])
        print(frame.fillna("").to_string(index=False))
        return 0
    records = run_records(args.runs_dir)
    if args.json:
        return _print_json(records)
    if not records:
        print("no runs yet")
        return 0
    frame = pd.DataFrame(records)
    frame["started"] = frame["started"].map(format_time)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.fillna("").to_string(index=False))
    return 0


def _cmd_report(args) -> int:
    from .run import open_run

    paths = open_run(args.run, args.runs_dir).report(args.out)
    for name, path in paths.items():
        print(f"{name:28s} {path}")
    return 0


def _interventions(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, raw = item.partition("=")
        try:
            out[name.strip()] = float(raw)
        except ValueError:
            raise WorkbenchError(f"--set {item!r}: expected VARIABLE=NUMBER, e.g. --set x3=1.0") from None
        if not name.strip():
            raise WorkbenchError(f"--set {item!r}: expected VARIABLE=NUMBER, e.g. --set x3=1.0")
    return out


def _cmd_do(args) -> int:
    from .query import do_query

    answer = do_query(args.run, args.model, _interventions(args.set or []), args.target, args.runs_dir,
                      bootstrap=args.bootstrap, level=args.level)
    if args.json:
        return _print_json(answer)
    setting = ", ".join(f"{k}={v:g}" for k, v in answer["do"].items())
    print(f"{answer['model']}: E[{args.target} | do({setting})] - E[{args.target}] = {answer['effect']:.4g}")
    if answer["bootstrap"]:
        print(f"  {answer['level']:.0%} interval {answer['low']:.4g} .. {answer['high']:.4g} "
              f"(bootstrap mean {answer['mean']:.4g}, {answer['bootstrap']} resamples of the rows, graph fixed)")
    print(f"  observational mean of {args.target}: {answer['observational_mean']:.4g}; its parents in the learned "
          f"graph: {', '.join(answer['parents_of_target']) or 'none'}")
    return 0


def _cmd_ablate(args) -> int:
    from .ablate import ablate, format_table

    result = ablate(args.preset, args.seeds, _overrides(args.set), args.runs_dir, args.out, args.scheduler,
                    progress=(lambda line: None) if args.quiet else (lambda line: print(line, flush=True)))
    print(format_table(result["table"]))
    for name, path in result["paths"].items():
        print(f"{name:20s} {path}")
    return 0


def _cmd_batch(args) -> int:
    from .batch import run_batch_cli  # checks for the notebooks extra before it starts

    return run_batch_cli(args)


def _cmd_compare(args) -> int:
    from .compare import compare_cli

    return compare_cli(args)


def _cmd_notebooks(args) -> int:
    from .notebooks import copy_notebooks

    for path, copied in copy_notebooks(args.dir, overwrite=args.force):
        print(f"{path}" + ("" if copied else "  (kept: exists; --force to overwrite)"))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the workbench's one-line errors (argparse prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"workbench: error: {clean(message)} (see `{self.prog} --help`)\n")


def _silence_stdout() -> None:
    """Send what is still to be written to a closed pipe nowhere (and no error at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured in tests): nothing to redirect
        pass
    finally:
        os.close(devnull)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"workbench: warning: {clean(message)}", file=file or sys.stderr)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="workbench", description="Train several PyTorch models together on Dask.")
    p.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def json_flag(sp):
        sp.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
        return sp

    s = sub.add_parser("presets", help="list presets, or show one resolved")
    s.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    s.add_argument("name", nargs="?")
    s.add_argument("--file", help="a user preset file to include")
    json_flag(s).set_defaults(func=_cmd_presets)
    json_flag(sub.add_parser("models", help="registered models")).set_defaults(func=_cmd_models)
    json_flag(sub.add_parser("datasets", help="catalog datasets")).set_defaults(func=_cmd_datasets)

    def common(sp, with_set=True):
        sp.add_argument("--runs-dir", help="default: $WORKBENCH_RUNS_DIR or ./runs")
        sp.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
        sp.add_argument("--security", metavar="PATH",
                        help="TLS for the scheduler: a folder with ca.pem, cert.pem and key.pem, or a YAML file "
                             "{ca, cert, key}")
        if with_set:
            sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override a preset value (dotted keys), e.g. --set epochs=3")
        sp.add_argument("--quiet", action="store_true", help="no progress display")
        sp.add_argument("--no-report", action="store_true", help="do not write report/ at the end")
        sp.add_argument("--detach", action="store_true",
                        help="drive the run from a process of its own that outlives this one; print its id and exit")
        sp.add_argument("--dashboard", action="store_true",
                        help="a local cluster serves Dask's dashboard (its link is printed; sets WORKBENCH_DASHBOARD=1)")

    s = sub.add_parser("run", help="start a run")
    s.add_argument("--preset", help="a preset name or a path to a preset JSON file (default: quick)")
    s.add_argument("--run-id", help="default: time stamp, preset and a random suffix")
    s.add_argument("--replay", metavar="RUN",
                   help="re-run RUN (an id or a directory) from its preset with its live changes at the same steps")
    common(s)
    s.set_defaults(func=_cmd_run)
    s = sub.add_parser("resume", help="continue an interrupted run from its checkpoints")
    s.add_argument("run")
    s.add_argument("--allow-restart", action="append", metavar="MODEL",
                   help="let MODEL start over at epoch 0 when it has no loadable checkpoint (repeatable)")
    common(s)
    s.set_defaults(func=_cmd_resume)
    def steering(name: str, help_: str, model: str | None = "?"):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("run")
        if model == "?":
            sp.add_argument("model", nargs="?", help="one model instance (default: every model)")
        elif model:
            sp.add_argument("model", help="the model instance, e.g. digits_mlp@digits")
        sp.add_argument("--runs-dir")
        sp.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the acknowledgement")
        return sp

    s = steering("set", "change live hyperparameters of a running model (pinned against the controller)", "1")
    s.add_argument("values", nargs="+", metavar="NAME=VALUE")
    s.add_argument("--no-pin", action="store_true", help="let the adaptive controller change it again")
    s.set_defaults(func=_cmd_set)
    s = steering("release", "hand a pinned hyperparameter back to the adaptive controller", "1")
    s.add_argument("name")
    s.set_defaults(func=_cmd_release)
    steering("pause", "pause one model, or all, at the next step boundary").set_defaults(func=_cmd_pause)
    steering("continue", "continue a paused model, or all").set_defaults(func=_cmd_continue)
    s = steering("stop", "stop a run at the next step boundary (resume later)", None)
    s.add_argument("--wait", action="store_true", help="wait until the run has stopped")
    s.set_defaults(func=_cmd_stop)
    s = sub.add_parser("watch", help="the live progress of a run driven by any process")
    s.add_argument("run")
    s.add_argument("--runs-dir")
    s.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=_cmd_watch)
    s = sub.add_parser("status", help="runs and their models' state")
    s.add_argument("run", nargs="?")
    s.add_argument("--runs-dir")
    json_flag(s).set_defaults(func=_cmd_status)
    s = sub.add_parser("report", help="write charts, summary.csv and report.html for a run")
    s.add_argument("run")
    s.add_argument("--runs-dir")
    s.add_argument("--out", help="default: RUN/report")
    s.set_defaults(func=_cmd_report)
    s = sub.add_parser("ablate", help="run a preset with each knowledge flow switched off in turn, and controls")
    s.add_argument("preset", help="a preset name or a path to a preset JSON file")
    s.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; each also varies the data splits")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset value, e.g. --set epochs=1")
    s.add_argument("--runs-dir", help="default: $WORKBENCH_RUNS_DIR or ./runs; the ablation gets a folder in it")
    s.add_argument("--out", help="the ablation's folder (default: RUNS_DIR/ablate-PRESET-TIMESTAMP)")
    s.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster per run)")
    s.add_argument("--quiet", action="store_true", help="no line per finished run")
    s.set_defaults(func=_cmd_ablate)
    s = sub.add_parser("do", help="ask a run's causal model the effect of an intervention, with an interval")
    s.add_argument("run")
    s.add_argument("--model", help="the causal model instance (default: the run's only model with a learned graph)")
    s.add_argument("--set", action="append", metavar="VARIABLE=VALUE", required=True,
                   help="the intervention do(VARIABLE=VALUE); repeat for several variables")
    s.add_argument("--target", required=True, help="the variable whose mean change is asked")
    s.add_argument("--bootstrap", type=int, default=200, help="resamples of the rows for the interval (0: none)")
    s.add_argument("--level", type=float, default=0.9, help="coverage of the interval")
    s.add_argument("--runs-dir")
    json_flag(s).set_defaults(func=_cmd_do)
    s = sub.add_parser("notebooks", help="copy the shipped notebooks into a folder (default ./notebooks)")
    s.add_argument("dir", nargs="?", default="notebooks")
    s.add_argument("--force", action="store_true", help="overwrite notebooks already there")
    s.set_defaults(func=_cmd_notebooks)
    s = sub.add_parser("batch", help="execute a notebook with papermill over parameter sets")
    s.add_argument("notebook", help="a notebook file, or a shipped one by name (collaborative_training)")
    s.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="a fixed parameter")
    s.add_argument("-g", "--grid", action="append", metavar="KEY=V1,V2", help="a parameter to sweep")
    s.add_argument("--params-file", help="JSON or YAML list of parameter sets")
    s.add_argument("--out", help="output folder (default: RUNS_DIR/batch-TIMESTAMP)")
    s.add_argument("--runs-dir")
    s.add_argument("--parallel", type=int, default=1, help="notebooks executed at once")
    s.add_argument("--kernel", help="an installed Jupyter kernel's name (default: this environment's Python)")
    s.add_argument("--show-code", action="store_true", help="keep the code cells in the HTML renderings (hidden by default)")
    s.set_defaults(func=_cmd_batch)
    s = sub.add_parser("compare", help="runs side by side: settings that differ, metrics, mean and spread over seeds")
    s.add_argument("runs", nargs="*", metavar="RUN", help="run ids (see `workbench status`)")
    s.add_argument("--batch", help="every run of this batch (the folder name, e.g. batch-20261126-140000)")
    s.add_argument("--group-by", action="append", metavar="PARAM",
                   help="a setting to group by, e.g. epochs or models.digits_mlp.hyperparameters.lr "
                        "(default: every differing setting but seed)")
    s.add_argument("--metric", help="the metric charted with --out (default: an accuracy, else the first eval/ one)")
    s.add_argument("--out", help="write the comparison as FILE.html (tables and chart) or FILE.png (chart)")
    s.add_argument("--runs-dir")
    json_flag(s).set_defaults(func=_cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = _parser().parse_args(argv)
    if getattr(args, "dashboard", False):  # read where the local cluster starts (a detached driver inherits it)
        os.environ["WORKBENCH_DASHBOARD"] = "1"
    previous_show, warnings.showwarning = warnings.showwarning, _one_line_warning  # a broken plugin: one line
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as noise at interpreter exit
        return code
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        print("workbench: error: standard output was closed (broken pipe)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_show


if __name__ == "__main__":
    sys.exit(main())
