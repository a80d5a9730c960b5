"""The package as users install and drive it: a built wheel in a fresh virtual environment,
machine-readable listings, a dataset from another package, the README's snippet as a script."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from workbench.states import ModelSnapshot, ModelState

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy(), cwd=cwd)


def _tracked_copy(dest: Path) -> Path:
    """The checkout's files as git would ship them (no runs/, no build outputs)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_batches_its_own_notebook_by_name(tmp_path):
    source = _tracked_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORKBENCH_RUNS_DIR")}
    # --force-reinstall: a checkout's egg-info (from an editable install) must not pass for an installed wheel
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    "--force-reinstall", str(wheel)], check=True, capture_output=True, timeout=300, env=clean)
    # The dependencies come from this environment (offline, fast); the workbench from the wheel:
    # a path in a .pth file is added to sys.path but its own .pth files (our editable install's
    # hook) are not run.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = dict(clean)
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")  # nbconvert's templates live there
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    work = tmp_path / "elsewhere"
    work.mkdir()

    def workbench(*args):
        return subprocess.run([str(venv / "bin" / "workbench"), *args], capture_output=True, text=True, env=env,
                              cwd=work, timeout=900)

    where = subprocess.run([str(python), "-c", "import workbench; print(workbench.__file__)"], capture_output=True,
                           text=True, env=env, cwd=work)
    assert where.stdout.startswith(purelib), where.stdout + where.stderr
    assert workbench("--version").stdout.strip() == "workbench 0.1.0"
    assert (Path(purelib) / "collaborative_training_workbench-0.1.0.dist-info" / "licenses" / "LICENSE").exists()
    copied = workbench("notebooks", "nb")
    assert copied.returncode == 0, copied.stderr
    assert sorted(p.name for p in (work / "nb").iterdir()) == [
        "collaborative_training.ipynb", "quickstart.ipynb", "results_analysis.ipynb"]
    batch = workbench("batch", "collaborative_training", "-p", "preset=digits_mutual", "-p", "epochs=1",
                      "--out", "out")
    assert batch.returncode == 0, batch.stdout + batch.stderr
    rendered = list((work / "runs").glob("*/collaborative_training.html"))  # a normal run of ./runs
    assert len(rendered) == 1 and rendered[0].stat().st_size > 10_000
    assert (rendered[0].parent / "store.sqlite").exists()


def test_batch_without_the_notebooks_extra_is_one_line_and_leaves_nothing(tmp_path):
    code = ("import sys; sys.modules['papermill'] = None; from workbench.cli import main; "
            f"sys.exit(main(['batch', 'collaborative_training', '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "workbench: error: executing notebooks needs papermill: pip install "
        "'collaborative-training-workbench[notebooks]'"]
    assert not (tmp_path / "out").exists()


def test_batch_by_an_unknown_name_suggests_the_shipped_one(tmp_path):
    result = _cli("batch", "colaborative_training", "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    assert "did you mean 'collaborative_training'?" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_notebooks_are_copied_out_and_edits_survive(tmp_path):
    from workbench.notebooks import copy_notebooks, find_notebook, list_notebooks

    assert set(list_notebooks()) == {"collaborative_training", "quickstart", "results_analysis"}
    assert find_notebook("quickstart.ipynb") == list_notebooks()["quickstart"]
    first = copy_notebooks(tmp_path)
    assert all(copied for _, copied in first)
    (tmp_path / "quickstart.ipynb").write_text("{}")
    again = dict(copy_notebooks(tmp_path))
    assert again[tmp_path / "quickstart.ipynb"] is False and (tmp_path / "quickstart.ipynb").read_text() == "{}"
    assert find_notebook(tmp_path / "quickstart.ipynb") == tmp_path / "quickstart.ipynb"  # a path wins


def test_version_and_json_listings_parse(tmp_path):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    version = _cli("--version", env=env)
    assert re.fullmatch(r"workbench \d+\.\d+\.\d+\S*", version.stdout.strip())
    presets = json.loads(_cli("presets", "--json", env=env).stdout)
    assert {"collaborative_training", "quick"} <= {p["name"] for p in presets}
    models = {m["name"]: m for m in json.loads(_cli("models", "--json", env=env).stdout)}
    assert models["digits_mlp"]["accepts"] == ["images", "labelled_tabular"]
    assert models["adaptive_learning_controller"]["role"] == "controller"
    datasets = {d["name"]: d for d in json.loads(_cli("datasets", "--json", env=env).stdout)}
    assert datasets["digits"]["kind"] == "images"
    assert json.loads(_cli("status", "--json", env=env).stdout) == []


def _snap(name: str, epoch: int, state: ModelState = ModelState.RUNNING) -> ModelSnapshot:
    return ModelSnapshot(name, "digits_mlp", "digits", state, epoch, 10, 40, 100, {}, frozenset(), 123.4, 56.0,
                         None, {"eval/accuracy": 0.93125})


@pytest.mark.parametrize("columns", [40, 60, 80, 100, 120, 200])
def test_progress_lines_fit_the_terminal(columns):
    from workbench.cli import _Progress

    line = _Progress(run=None)._line(_snap("causal_reasoning_engine@sem_nonlinear#2", 3), columns)
    assert len(line) <= columns - 1
    assert line.startswith("causal_reasoning_engine"[:16])
    if columns >= 60:
        assert "3/10" in line and "running" in line and "eval/accuracy=0.9313" in line
    if columns >= 120:
        assert "st/s" in line and "eta" in line


def test_a_waiting_model_reads_waiting_in_the_terminal_without_pace():
    import dataclasses

    from workbench.cli import _Progress

    line = _Progress(run=None)._line(dataclasses.replace(_snap("digits_mlp@digits", 3), waiting="peer x (paused)"))
    assert "waiting" in line and "running" not in line and "st/s" not in line and "eta" not in line


def _write_plugin(folder: Path) -> None:
    """A package ``blobs_plugin`` with a ``workbench.datasets`` entry point, as pip installs one."""
    (folder / "blobs_plugin.py").write_text(textwrap.dedent('''
        import numpy as np
        import pandas as pd

        from workbench.data import Dataset, register_dataset


        @register_dataset("blobs", "labelled_tabular", "three Gaussian blobs in 4-d (a plugin's data)")
        def load_blobs(seed: int) -> Dataset:
            rng = np.random.default_rng(seed)
            centres = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], dtype=float)
            labels = rng.integers(0, 3, 600)
            x = centres[labels] + rng.standard_normal((600, 4))
            frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
            frame["label"] = labels
            return Dataset(name="blobs", kind="labelled_tabular", frame=frame, target="label")
    '''))
    info = folder / "blobs_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: blobs-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[workbench.datasets]\nblobs = blobs_plugin:load_blobs\n")


@pytest.mark.slow
def test_a_plugin_dataset_is_listed_and_trained_from_the_cli(tmp_path):
    plugin = tmp_path / "site"
    plugin.mkdir()
    _write_plugin(plugin)
    runs = tmp_path / "runs"
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs),
           "PYTHONPATH": os.pathsep.join([str(plugin), *filter(None, [os.environ.get("PYTHONPATH")])])}
    listed = {d["name"]: d for d in json.loads(_cli("datasets", "--json", env=env).stdout)}
    assert listed["blobs"] == {"name": "blobs", "kind": "labelled_tabular",
                               "description": "three Gaussian blobs in 4-d (a plugin's data)"}
    result = _cli("run", "--preset", "digits_mutual", "--set", 'datasets=["blobs"]', "--set",
                  'target_models=["digits_mlp"]', "--set", "epochs=2", "--quiet", "--no-report", "--run-id", "blobs",
                  env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    detail = json.loads(_cli("status", "blobs", "--json", env=env).stdout)
    assert detail["state"] == "finished" and detail["started"].count(":") >= 2
    assert [(m["model"], m["state"], m["epoch"]) for m in detail["models"]] == [("digits_mlp@blobs", "finished", 2)]
    listing = json.loads(_cli("status", "--json", env=env).stdout)
    assert [r["run"] for r in listing] == ["blobs"]
    from workbench.store import read_store

    accuracy = read_store(runs / "blobs" / "store.sqlite").metrics(name="eval/test_accuracy")
    assert accuracy["value"].iloc[-1] > 0.9  # the blobs are well apart: the data really was trained on


@pytest.mark.slow
def test_the_readme_python_snippet_runs_as_a_script(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "start_run" in block)
    script = tmp_path / "snippet.py"
    script.write_text(snippet)  # as written: no `if __name__ == "__main__":` guard
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    from workbench import open_run

    (run_dir,) = (tmp_path / "runs").iterdir()
    record = open_run(run_dir.name, tmp_path / "runs")
    assert record.state.value == "finished"
    assert not record.events(kind="hparam").empty


def test_environment_yml_takes_every_dependency_from_conda_forge():
    """Each dependency the environment installs (the notebooks and test extras included) has
    its conda-forge package; pip installs the project only."""
    import tomllib

    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = {re.split(r"[<>=! ]", d)[0] for d in env["dependencies"] if isinstance(d, str)}
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip == ["-e .[notebooks,test]"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r"\[(.*)\]", pip[0]).group(1).split(",")  # the extras the environment asks for
    required = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    conda_name = {"torch": "pytorch-cpu", "dask": "dask-core", "matplotlib": "matplotlib-base",
                  "nbconvert": "nbconvert-core", "playwright": "playwright-python"}
    missing = [r for r in required if conda_name.get(re.split(r"[<>=\[ ]", r)[0].lower(),
                                                     re.split(r"[<>=\[ ]", r)[0].lower()) not in conda]
    assert not missing, f"environment.yml lacks the conda-forge package for {missing}"
    assert "distributed" in conda  # dask[distributed]


def test_a_loader_breaking_the_dataset_contract_is_named():
    from workbench.data import catalog
    from workbench.errors import DataError

    @catalog.register_dataset("contract_test", "labelled_tabular")
    def wrong_kind(seed: int):
        return catalog.Dataset(name="contract_test", kind="tabular")

    try:
        with pytest.raises(DataError, match=r"dataset 'contract_test' \(loader .*wrong_kind\) returned kind "
                                            r"'tabular' but is registered as 'labelled_tabular'"):
            catalog.load_dataset("contract_test")
    finally:
        catalog._CATALOG.pop("contract_test")


def test_a_broken_dataset_plugin_is_skipped_with_one_warning_line(tmp_path):
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[workbench.datasets]\nbroken = no_such_module:load\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = _cli("datasets", "--json", env=env, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "digits" in {d["name"] for d in json.loads(result.stdout)}  # the others are still there
    assert result.stderr.strip() == ("workbench: warning: plugin dataset 'broken' (no_such_module:load) skipped: "
                                     "ModuleNotFoundError: No module named 'no_such_module'")
