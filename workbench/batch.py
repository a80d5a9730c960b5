"""``workbench batch NOTEBOOK``: papermill over parameter sets, rendered outputs, an index.

Each parameter set is one job, executed in its own papermill process (so its own kernel:
parallel jobs never share a kernel, ports or a working directory) with a runs directory
of its own (``OUT/job-NNN``). The executed notebook and its HTML rendering are written
next to the run the job made (``OUT/job-NNN/RUN_ID/``), or into the job folder when the
notebook made no run, and ``OUT/index.html`` links them all.

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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .limits import MAX_PARALLEL_JOBS, check_writable_dir

__all__ = ["Job", "parameter_sets", "require_notebook_extra", "run_batch", "run_batch_cli", "write_index"]

# What executing and rendering a notebook needs; all of it comes with the `notebooks` extra.
_NOTEBOOK_MODULES = ("papermill", "nbconvert", "nbformat", "ipykernel")

_HTML_LOCK = threading.Lock()  # nbconvert's exporters are not documented as thread-safe


@dataclass
class Job:
    index: int
    parameters: dict[str, Any]
    folder: Path
    status: str = "pending"  # ok | failed
    notebook: Path | None = None
    html: Path | None = None
    run_dir: Path | None = None
    seconds: float = 0.0
    error: str = ""
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


def _run_job(notebook: Path, job: Job, kernel: str | None, timeout: float | None) -> Job:
    job.folder.mkdir(parents=True, exist_ok=True)
    params_path = job.folder / "parameters.json"
    params_path.write_text(json.dumps(job.parameters, indent=2))
    executed = job.folder / notebook.name
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(executed), "-f", str(params_path),
           "--cwd", str(job.folder), "--no-progress-bar"]
    if kernel:
        cmd += ["-k", kernel]
    if timeout:
        cmd += ["--execution-timeout", str(int(timeout))]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WORKBENCH_RUNS_DIR": str(job.folder)})
    job.seconds = time.time() - started
    (job.folder / "papermill.log").write_text(proc.stdout + proc.stderr)
    job.status = "ok" if proc.returncode == 0 else "failed"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        job.error = lines[-1] if lines else f"papermill exited with {proc.returncode}"
    runs = sorted((p.parent for p in job.folder.glob("*/store.sqlite")), key=lambda p: p.stat().st_mtime)
    job.run_dir = runs[-1] if runs else None
    if job.run_dir is not None and job.status == "ok":  # the notebook ran; did its run lose nothing?
        from .run import RunRecord

        record = RunRecord(job.run_dir)
        state = record.state
        if not state.ok and state.is_finished():
            job.status = "failed"
            job.error = "; ".join([f"run {record.id} {state.value}", *record.failures()])
    target = job.run_dir or job.folder
    if executed.exists():
        job.notebook = target / notebook.name
        if job.notebook != executed:
            executed.replace(job.notebook)
        job.html = job.notebook.with_suffix(".html")
        with _HTML_LOCK:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_filename(str(job.notebook))
        job.html.write_text(body)
    return job


def _check_parallel(parallel: int) -> None:
    if not 1 <= parallel <= MAX_PARALLEL_JOBS:
        raise WorkbenchError(f"--parallel must be 1 to {MAX_PARALLEL_JOBS} (notebooks executed at once), got {parallel}")


def run_batch(notebook: str | Path, sets: list[dict[str, Any]], out: str | Path, parallel: int = 1,
              kernel: str | None = "python3", timeout: float | None = None) -> list[Job]:
    """Execute ``notebook`` (a path or a shipped notebook's name) once per parameter set,
    ``parallel`` at a time; write ``index.html``."""
    from .notebooks import find_notebook

    require_notebook_extra()
    _check_parallel(parallel)
    notebook = find_notebook(notebook).resolve()
    out = check_writable_dir(out, "batch output folder")
    declared = _notebook_parameters(notebook)
    unknown = sorted({k for s in sets for k in s} - declared)
    if unknown:
        raise WorkbenchError(f"{notebook.name} has no parameter(s) {', '.join(unknown)}; "
                             f"its parameters: {', '.join(sorted(declared)) or 'none (no cell tagged parameters)'}")
    out.mkdir(parents=True, exist_ok=True)  # after every check: a refused batch leaves no folder
    jobs = []
    for i, params in enumerate(sets):
        folder = out / f"job-{i:03d}"
        if "runs_dir" in declared and "runs_dir" not in params:
            params = {**params, "runs_dir": str(folder)}  # each job its own runs directory
        jobs.append(Job(i, params, folder))
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(lambda job: _run_job(notebook, job, kernel, timeout), jobs))
    write_index(jobs, out, notebook.name)
    return jobs


def write_index(jobs: list[Job], out: Path, title: str) -> Path:
    """``index.html``: one row per job with its parameters, status and links."""
    def link(path: Path | None, text: str) -> str:
        return f"<a href='{html.escape(str(path.relative_to(out)))}'>{text}</a>" if path else ""

    rows = "".join(
        f"<tr><td>{j.index}</td><td><code>{html.escape(json.dumps(j.parameters))}</code></td>"
        f"<td class='{j.status}'>{j.status}</td><td>{j.seconds:.0f}s</td><td>{link(j.html, 'HTML')}</td>"
        f"<td>{link(j.notebook, 'notebook')}</td><td>{html.escape(j.run_dir.name) if j.run_dir else ''}</td>"
        f"<td>{link(j.run_dir / 'report' / 'report.html' if j.run_dir and (j.run_dir / 'report' / 'report.html').exists() else None, 'report')}</td>"
        f"<td>{html.escape(j.error)}</td></tr>" for j in jobs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Batch: {html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
            ".ok{color:#2a7}.failed{color:#c22}</style></head><body>"
            f"<h1>{html.escape(title)}: {len(jobs)} job(s)</h1><table><tr><th>#</th><th>parameters</th><th>status</th>"
            f"<th>time</th><th>rendered</th><th>executed</th><th>run</th><th>report</th><th>error</th></tr>{rows}"
            "</table></body></html>")
    path = out / "index.html"
    path.write_text(page)
    return path


def run_batch_cli(args: Any) -> int:
    """The ``workbench batch`` command (see :mod:`workbench.cli`)."""
    from .notebooks import find_notebook
    from .run import runs_dir

    require_notebook_extra()
    find_notebook(args.notebook)  # a bad name fails before the output folder is made
    sets = parameter_sets(args.param, args.grid, args.params_file)
    _check_parallel(args.parallel)  # before the banner line below
    out = Path(args.out) if args.out else runs_dir(args.runs_dir) / f"batch-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"{len(sets)} job(s) of {args.notebook}, {args.parallel} at a time -> {out}")
    jobs = run_batch(args.notebook, sets, out, parallel=args.parallel)
    for job in jobs:
        where = job.html or job.folder
        print(f"job {job.index:3d} {job.status:6s} {job.seconds:6.0f}s {where}" + (f"  {job.error}" if job.error else ""))
    print(f"index {out / 'index.html'}")
    return 0 if all(j.status == "ok" for j in jobs) else 1
