"""A driver process of its own: the coordinator of one run, outliving whoever started it.

``start_run(detach=True)`` / ``workbench run --detach`` stage the run directory, then
:func:`spawn` starts ``python -m workbench._driver SPEC`` in a new session (so a kernel
restart, a closed terminal or the end of a papermill job does not reach it). The child
drives the run in attached mode inside itself, reports one JSON line on its stdout once
training has started (or the one-line error that stopped it), then writes its output to
``RUN_DIR/logs/driver.log`` and exits when the run ends. SIGTERM, SIGINT and SIGHUP stop
the run at the next step boundary, as Ctrl-C does (a second one aborts).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["spawn", "main", "START_TIMEOUT_S"]

START_TIMEOUT_S = 300.0  # cluster start plus data checks on a busy machine


def _child_env() -> dict[str, str]:
    """This process's import path, so the driver finds what this process found."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    cwd = os.getcwd()
    if "" in sys.path or "." in sys.path:  # a script's folder or the notebook's
        paths.insert(0, cwd)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn(run_dir: Path, action: str, scheduler: str | None = None, overrides: dict[str, Any] | None = None,
          replay: str | None = None, allow_restart: list[str] | None = None, security: str | None = None):
    """Start the driver of a staged (``start``) or interrupted (``resume``) run; return the
    attached :class:`~workbench.handles.Run` once it trains, or raise its error."""
    import shutil

    from .handles import AttachedRun

    run_dir = Path(run_dir)
    spec = {"run_dir": str(run_dir), "action": action, "scheduler": scheduler, "overrides": overrides or {},
            "replay": replay, "allow_restart": allow_restart or [], "security": security}
    proc = subprocess.Popen([sys.executable, "-m", "workbench._driver", json.dumps(spec)], cwd=os.getcwd(),
                            env=_child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    answer: dict[str, Any] = {}
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("{\"workbench_driver\""):
                answer.update(json.loads(line))
                return
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    if answer.get("ok"):
        proc.stdout.close()
        return AttachedRun(run_dir)
    if not answer:  # no word from the driver: it died, or is stuck starting
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if action == "start" and not (run_dir / "store.sqlite").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        tail = "".join(lines[-5:]).strip()
        raise WorkbenchError(f"the driver process of {run_dir.name} did not start"
                             + (f": {tail.splitlines()[-1]}" if tail else f" within {START_TIMEOUT_S:.0f} s"))
    proc.wait()
    raise WorkbenchError(answer.get("error", "the driver process failed"))


def _report(message: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps({"workbench_driver": 1, **message}) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):  # the starter is gone: nobody to tell
        pass


def _to_log(run_dir: Path) -> None:
    """From now on this process's output goes to the run's driver log, not the starter."""
    folder = run_dir / "logs"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / "driver.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def stop_on_signals(run) -> None:
    """SIGTERM, SIGINT and SIGHUP stop ``run`` at the next step boundary; a second one aborts."""
    count = {"n": 0}

    def handler(signum, frame):
        count["n"] += 1
        if count["n"] > 1:
            raise KeyboardInterrupt
        run.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, handler)


def _start(spec: dict[str, Any]):
    from ._staging import load_code
    from .plan import make_plan
    from .replay import replay_plan
    from .run import _drive_new, _place

    run_dir = Path(spec["run_dir"])
    code = load_code(run_dir)
    schedule = replay_plan(spec["replay"]) if spec.get("replay") else None
    stored = json.loads((run_dir / "preset.json").read_text())
    name = stored.pop("name")
    plan = make_plan(name, stored)
    # On an external cluster, placement waits for its workers (run._drive_new).
    inventory, placements = (None, None) if spec.get("scheduler") else _place(plan)
    from ._security import load_security

    return _drive_new(run_dir, plan, inventory, placements, spec.get("scheduler"), load_security(spec.get("security")),
                      code, schedule)


def _built(run, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until every model is built (or the run ended) and the store says so, so a client
    attaching right after the start sees every model and its hyperparameters."""
    import time

    from .states import ModelState

    deadline = time.time() + timeout
    while not run.done and time.time() < deadline:
        if all(m.state != ModelState.PENDING for m in run.snapshot().models.values()):
            break
        time.sleep(0.05)
    run._publish()
    run._store.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    run_dir = Path(spec["run_dir"])
    try:
        if spec["action"] == "start":
            run = _start(spec)
        else:
            from .run import resume_run

            run = resume_run(run_dir.name, run_dir.parent, spec.get("overrides") or None, spec.get("scheduler"),
                             spec.get("security"), allow_restart=spec.get("allow_restart") or ())
    except WorkbenchError as exc:
        _report({"ok": False, "error": str(exc)})
        return 2
    except BaseException as exc:  # noqa: BLE001  (the starter shows it as one line)
        _report({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    stop_on_signals(run)
    _built(run)
    _report({"ok": True, "run_id": run.id, "pid": os.getpid()})
    _to_log(run_dir)
    while not run.done:
        try:
            state = run.wait(timeout=1.0)
        except KeyboardInterrupt:  # a second signal: leave now, resume continues from checkpoints
            return 130
    state = run.wait()
    print(f"run {run.id} {state.value}", flush=True)
    for line in run.failures():
        print(line, flush=True)
    _leave_report(run, state)
    return 0 if state.ok else 1


def _leave_report(run, state) -> None:
    """Write the run's report now, in the process that drove it, as ``workbench run`` does at
    its end: ``workbench report`` and the panel's Results then find it made (a fifth of a
    second) instead of starting pandas and matplotlib to draw it (two seconds for a run of a
    million points). A report that cannot be written costs a line in the log, not the run."""
    if not state.reportable:
        return
    try:
        paths = run.report()
    except (WorkbenchError, OSError) as exc:
        print(f"report not written: {exc}", flush=True)
    else:
        print(f"report {paths['report.html']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
