"""``workbench batch NOTEBOOK``: papermill over parameter sets, rendered outputs, an index.

Each parameter set is one job, executed in its own papermill process (so its own kernel:
parallel jobs never share a kernel, ports or a working directory). Every run a job makes is
a normal run of the caller's runs directory (``workbench status``, ``report``, ``resume``,
``compare`` find it), tagged with its batch: the job passes ``$WORKBENCH_BATCH_JOB`` (its
folder ``OUT/job-NNN``) and :func:`workbench.start_run` records ``batch``, ``batch_dir``
and ``batch_job`` in the run's ``run`` table. The job folder keeps the job's
``parameters.json`` and ``papermill.log``; the executed notebook and its HTML rendering lie
next to the run the job made (in the job folder when the notebook made no run), and
``OUT/index.html`` links them all. The index and the terminal show each job's live state
while the batch runs, and each run's key metrics when it is done.

A string parameter naming an existing file or folder relative to the caller's directory
(``-p preset=mine.json``) is passed as its absolute path: the job runs in its own folder.
The kernel is this environment's Python (a kernelspec written for the batch, whose argv is
``sys.executable``) unless ``kernel`` names an installed one.

``NOTEBOOK`` is a path, or the name of a notebook shipped with the package
(``workbench batch collaborative_training``). Papermill and nbconvert are imported only
when a batch runs: ``import workbench`` stays free of Jupyter packages; without them (the
``notebooks`` extra) a batch stops before it starts, with one line naming the extra.
"""
from __future__ import annotations

import html
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .limits import MAX_PARALLEL_JOBS, check_writable_dir

__all__ = ["Job", "job_line", "parameter_sets", "require_notebook_extra", "run_batch", "run_batch_cli", "write_index"]

# What executing and rendering a notebook needs; all of it comes with the `notebooks` extra.
_NOTEBOOK_MODULES = ("papermill", "nbconvert", "nbformat", "ipykernel")

_HTML_LOCK = threading.Lock()  # nbconvert's exporters are not documented as thread-safe


@dataclass
class Job:
    index: int
    parameters: dict[str, Any]
    folder: Path
    status: str = "pending"  # running | ok | failed
    notebook: Path | None = None
    html: Path | None = None
    run_dir: Path | None = None
    seconds: float = 0.0
    error: str = ""
    live: str = ""  # the run's progress while the job runs, e.g. "epoch 3/10, 2 running"
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> key eval metric -> final
    started: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise WorkbenchError(f"{what} '{item}': expected KEY=VALUE, e.g. epochs=2")
        key, raw = item.split("=", 1)
        out.append((key.strip(), raw))
    return out


def require_notebook_extra() -> None:
    """Raise :class:`MissingExtraError` naming the pip command when a notebook package is missing."""
    from .errors import MissingExtraError

    missing = [m for m in _NOTEBOOK_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"executing notebooks needs {', '.join(missing)}: pip install "
                                "'collaborative-training-workbench[notebooks]'")


def parameter_sets(params: list[str] | None = None, grid: list[str] | None = None,
                   params_file: str | Path | None = None) -> list[dict[str, Any]]:
    """Every job's parameters: the file's list (or one empty set) x the grid, plus fixed params.

    ``params``: ``KEY=VALUE`` (JSON values where they parse); ``grid``: ``KEY=V1,V2``;
    ``params_file``: JSON or YAML, a list of parameter objects.
    """
    base = [{}]
    if params_file:
        path = Path(params_file)
        if not path.is_file():
            raise WorkbenchError(f"parameter file not found: {path}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkbenchError(f"{path}: not UTF-8 text (offset {exc.start}); save it as UTF-8") from None
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise WorkbenchError("YAML parameter files need PyYAML: pip install pyyaml") from None
            try:
                data = yaml.safe_load(text)
            except (yaml.YAMLError, RecursionError) as exc:
                raise WorkbenchError(f"{path}: not valid YAML: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise WorkbenchError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
            except (RecursionError, ValueError) as exc:  # nested too deeply, an integer of thousands of digits
                raise WorkbenchError(f"{path}: cannot be read as JSON ({type(exc).__name__})") from None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data) or not data:
            raise WorkbenchError(f"{path}: must be a non-empty list of parameter objects")
        base = data
    axes = [(key, [_value(v) for v in raw.split(",")]) for key, raw in _pairs(grid, "--grid")]
    fixed = {key: _value(raw) for key, raw in _pairs(params, "--param")}
    sets = []
    for item in base:
        for combo in itertools.product(*[values for _, values in axes]):
            sets.append({**item, **dict(zip([k for k, _ in axes], combo)), **fixed})
    return sets


def _notebook_parameters(notebook: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def _absolute_paths(params: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """String values naming an existing file or folder relative to ``cwd``, made absolute:
    the job's kernel runs in the job folder, the user meant the folder they typed in."""
    out = dict(params)
    for key, value in params.items():
        if isinstance(value, str) and value and not os.path.isabs(value):
            candidate = cwd / value
            try:
                if candidate.exists():
                    out[key] = str(candidate.resolve())
            except OSError:  # a value too long or odd for a path: it is not one
                pass
    return out


def _kernel_path(home: Path) -> str:
    """A ``python3`` kernelspec running this interpreter, in ``home/kernels``; the returned
    ``JUPYTER_PATH`` puts it before any other ``python3`` (another environment's kernel
    first on the user's path would run the jobs without this environment's packages)."""
    spec = home / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": True}}))
    rest = os.environ.get("JUPYTER_PATH")
    return str(home) + (os.pathsep + rest if rest else "")


def _find_run(job: Job, out: Path, root: Path) -> Path | None:
    """The run the job's notebook started: tagged with this batch folder and job index."""
    from .store import read_store

    for store in root.glob("*/store.sqlite") if root.exists() else []:
        try:
            if store.stat().st_mtime < job.started - 1:
                continue  # older than the job: not its run
            info = read_store(store).run_info()
        except Exception:  # a run being created, or damaged: not this job's (yet)
            continue
        if info.get("batch_dir") == str(out) and info.get("batch_job") == job.index:
            return store.parent
    return None


def _live(run_dir: Path) -> str:
    """``epoch 3/10, 2 running``: the least advanced model's epoch and the models' states."""
    from .store import read_store

    try:
        models = read_store(run_dir / "store.sqlite").models()
    except Exception:
        return "starting"
    if models.empty:
        return "starting"
    epochs = [(int(e or 0), int(t or 0)) for e, t in zip(models["epoch"].fillna(0), models["total_epochs"].fillna(0))]
    done, total = min(epochs)
    states = models["state"].fillna("pending").value_counts()
    return f"epoch {done}/{total}, " + ", ".join(f"{n} {state}" for state, n in states.items())


def _run_job(notebook: Path, job: Job, kernel: str | None, timeout: float | None, root: Path, out: Path,
             env: dict[str, str], changed, show_code: bool = False) -> Job:
    job.folder.mkdir(parents=True, exist_ok=True)
    params_path = job.folder / "parameters.json"
    params_path.write_text(json.dumps(job.parameters, indent=2))
    executed = job.folder / notebook.name
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(executed), "-f", str(params_path),
           "--cwd", str(job.folder), "--no-progress-bar", "-k", kernel or "python3"]
    if timeout:
        cmd += ["--execution-timeout", str(int(timeout))]
    job.started = time.time()
    job.status = "running"
    changed(job)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**env, "WORKBENCH_RUNS_DIR": str(root), "WORKBENCH_BATCH_JOB": str(job.folder)})
    job.seconds = time.time() - job.started
    (job.folder / "papermill.log").write_text(proc.stdout + proc.stderr)
    status = "ok" if proc.returncode == 0 else "failed"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        job.error = lines[-1] if lines else f"papermill exited with {proc.returncode}"
    job.run_dir = job.run_dir or _find_run(job, out, root)
    if job.run_dir is not None:
        from .compare import key_metrics
        from .run import RunRecord

        record = RunRecord(job.run_dir)
        state = record.state
        job.live = _live(job.run_dir)
        try:
            job.metrics = key_metrics(job.run_dir)
        except Exception:  # an unreadable store: the job's error says why
            job.metrics = {}
        if status == "ok" and not state.ok and state.is_finished():  # the notebook ran; did its run lose nothing?
            status = "failed"
            job.error = "; ".join([f"run {record.id} {state.value}", *record.failures()])
    target = job.run_dir or job.folder
    if executed.exists():
        job.notebook = target / notebook.name
        if job.notebook != executed:
            executed.replace(job.notebook)
        job.html = job.notebook.with_suffix(".html")
        with _HTML_LOCK:
            from nbconvert import HTMLExporter

            # The rendering is the report people share: the code hidden unless asked for.
            exporter = HTMLExporter(exclude_input=not show_code, exclude_input_prompt=not show_code,
                                    exclude_output_prompt=not show_code)
            body, _ = exporter.from_filename(str(job.notebook))
        job.html.write_text(body)
    job.status = status
    changed(job)
    return job


def _check_parallel(parallel: int) -> None:
    if not 1 <= parallel <= MAX_PARALLEL_JOBS:
        raise WorkbenchError(f"--parallel must be 1 to {MAX_PARALLEL_JOBS} (notebooks executed at once), got {parallel}")


def run_batch(notebook: str | Path, sets: list[dict[str, Any]], out: str | Path, parallel: int = 1,
              kernel: str | None = None, timeout: float | None = None, runs_dir: str | Path | None = None,
              on_change: Callable[[Job], None] | None = None, poll: float = 2.0, show_code: bool = False) -> list[Job]:
    """Execute ``notebook`` (a path or a shipped notebook's name) once per parameter set,
    ``parallel`` at a time, its runs in ``runs_dir`` (default: ``$WORKBENCH_RUNS_DIR`` or
    ``./runs``); keep ``OUT/index.html`` current as jobs start, progress and end.

    ``kernel``: an installed kernelspec's name; None runs this interpreter. ``on_change``
    is called with a job whenever its status or live progress changes (from any thread).
    The HTML renderings hide the code cells unless ``show_code``.
    """
    from .notebooks import find_notebook
    from .run import runs_dir as _runs_dir

    require_notebook_extra()
    _check_parallel(parallel)
    notebook = find_notebook(notebook).resolve()
    out = check_writable_dir(out, "batch output folder").resolve()
    root = check_writable_dir(_runs_dir(runs_dir), "runs directory")
    declared = _notebook_parameters(notebook)
    unknown = sorted({k for s in sets for k in s} - declared)
    if unknown:
        raise WorkbenchError(f"{notebook.name} has no parameter(s) {', '.join(unknown)}; "
                             f"its parameters: {', '.join(sorted(declared)) or 'none (no cell tagged parameters)'}")
    if kernel:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            KernelSpecManager().get_kernel_spec(kernel)
        except NoSuchKernel:
            names = sorted(KernelSpecManager().find_kernel_specs())
            raise WorkbenchError(f"--kernel '{kernel}': no such kernel; installed: {', '.join(names) or 'none'} "
                                 "(leave --kernel out to use this environment's Python)") from None
    out.mkdir(parents=True, exist_ok=True)  # after every check: a refused batch leaves no folder
    jobs = []
    cwd = Path.cwd()
    for i, params in enumerate(sets):
        params = _absolute_paths(params, cwd)
        if "runs_dir" in declared and "runs_dir" not in params:
            params = {**params, "runs_dir": str(root)}  # the caller's runs directory, where status looks
        jobs.append(Job(i, params, out / f"job-{i:03d}"))
    lock = threading.Lock()
    title = notebook.name

    def changed(job: Job) -> None:
        with lock:
            write_index(jobs, out, title)
        if on_change is not None:
            on_change(job)

    done = threading.Event()

    def watch() -> None:  # the runs' live progress, read from their stores
        while not done.wait(poll):
            for job in jobs:
                if job.status != "running":
                    continue
                job.run_dir = job.run_dir or _find_run(job, out, root)
                live = _live(job.run_dir) if job.run_dir else "starting the kernel"
                if live != job.live and job.status == "running":
                    job.live = live
                    changed(job)

    with tempfile.TemporaryDirectory(prefix="workbench-kernel-") as home:
        env = dict(os.environ)
        if not kernel:
            env["JUPYTER_PATH"] = _kernel_path(Path(home))
        write_index(jobs, out, title)
        watcher = threading.Thread(target=watch, name="workbench-batch-watch", daemon=True)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                list(pool.map(lambda job: _run_job(notebook, job, kernel, timeout, root, out, env, changed,
                                                       show_code), jobs))
        finally:
            done.set()
            watcher.join(timeout=30)
    with lock:
        write_index(jobs, out, title)
    return jobs


def _metrics_text(job: Job) -> str:
    return "; ".join(f"{model.split('@')[0]} {name.split('/', 1)[-1]}={value:.4g}"
                     for model, values in sorted(job.metrics.items()) for name, value in values.items())


def write_index(jobs: list[Job], out: Path, title: str) -> Path:
    """``index.html``: one row per job with its parameters, state, run, key metrics and links;
    while a job is pending or running the page reloads itself every 5 s."""
    def link(path: Path | None, text: str) -> str:
        return f"<a href='{html.escape(os.path.relpath(path, out))}'>{text}</a>" if path else ""

    def report(job: Job) -> Path | None:
        path = job.run_dir / "report" / "report.html" if job.run_dir else None
        return path if path is not None and path.exists() else None

    running = any(j.status in ("pending", "running") for j in jobs)
    rows = "".join(
        f"<tr><td>{j.index}</td><td><code>{html.escape(json.dumps(j.parameters))}</code></td>"
        f"<td class='{j.status}'>{j.status}</td><td>{html.escape(j.live)}</td>"
        f"<td>{html.escape(_metrics_text(j))}</td><td>{j.seconds:.0f}s</td><td>{link(j.html, 'HTML')}</td>"
        f"<td>{link(j.notebook, 'notebook')}</td><td>{html.escape(j.run_dir.name) if j.run_dir else ''}</td>"
        f"<td>{link(report(j), 'report')}</td><td>{html.escape(j.error)}</td></tr>" for j in jobs)
    counts = {s: sum(j.status == s for j in jobs) for s in ("pending", "running", "ok", "failed")}
    state = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Batch: {html.escape(title)}</title>"
            + ("<meta http-equiv='refresh' content='5'>" if running else "") +
            "<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
            ".ok{color:#2a7}.failed{color:#c22}.running{color:#27c}</style></head><body>"
            f"<h1>{html.escape(title)}: {len(jobs)} job(s)</h1><p>{html.escape(state)}"
            f"{' (this page reloads itself while the batch runs)' if running else ''}</p>"
            "<table><tr><th>#</th><th>parameters</th><th>status</th><th>progress</th><th>final metrics</th>"
            f"<th>time</th><th>rendered</th><th>executed</th><th>run</th><th>report</th><th>error</th></tr>{rows}"
            "</table></body></html>")
    path = out / "index.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)  # a browser reloading the page never reads half of it
    return path


def job_line(job: Job) -> str:
    """One terminal line: the job's state, its run's progress or key metrics, where its output is."""
    parts = [f"job {job.index:3d} {job.status:7s}"]
    if job.status == "running":
        parts.append(job.live or "starting the kernel")
    else:
        parts.append(f"{job.seconds:5.0f}s")
        if job.run_dir:
            parts.append(job.run_dir.name)
        if job.metrics:
            parts.append(_metrics_text(job))
        if job.error:
            parts.append(job.error)
    return "  ".join(parts)


def run_batch_cli(args: Any) -> int:
    """The ``workbench batch`` command (see :mod:`workbench.cli`)."""
    from .notebooks import find_notebook
    from .run import runs_dir

    require_notebook_extra()
    find_notebook(args.notebook)  # a bad name fails before the output folder is made
    sets = parameter_sets(args.param, args.grid, args.params_file)
    _check_parallel(args.parallel)  # before the banner line below
    root = runs_dir(args.runs_dir)
    out = Path(args.out) if args.out else root / f"batch-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"{len(sets)} job(s) of {args.notebook}, {args.parallel} at a time -> {out} (runs in {root})", flush=True)
    printing = threading.Lock()

    def show(job: Job) -> None:
        with printing:
            print(job_line(job), flush=True)

    jobs = run_batch(args.notebook, sets, out, parallel=args.parallel, kernel=args.kernel, runs_dir=root,
                     on_change=show, show_code=args.show_code)
    for job in jobs:
        print(job_line(job) + (f"  {job.html}" if job.html else ""))
    print(f"index {out / 'index.html'}")
    return 0 if all(j.status == "ok" for j in jobs) else 1
