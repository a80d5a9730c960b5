"""Hostile and mistaken input, as a user types it: one line, exit 2, nothing made, nothing lost.

Each case runs the real CLI in-process (``workbench.cli.main``) and checks: exit code 2, a
single ``workbench: error: ...`` line with the expected words, no traceback, no new entry
in the runs directory, and every existing file there byte for byte unchanged (a corrupt
store is never rewritten). The runs directory holds one real run, made by the engine on a
real scheduler, where one model could not be built.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench import HParam, Trainer, register_model
from workbench.cli import main


@register_model("hostile_unbuildable")
class Unbuildable(Trainer):
    """A model whose constructor fails, as a user's model with a bug would."""

    accepts = ("images",)
    hyperparameters = {"batch_size": HParam(int, 32, low=1, high=4096)}
    metrics = ("train/loss",)

    def __init__(self, hparams, data, resources, seed):
        raise ValueError("this model cannot be built")

    steps_per_epoch = 1

    def train_step(self, ctx):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError

    def state_dict(self):
        raise NotImplementedError

    def load_state_dict(self, state):
        raise NotImplementedError


_PRESET = {"description": "two models, one broken", "datasets": ["digits"], "epochs": 1, "batch_size": 64,
           "target_models": ["digits_mlp", "hostile_unbuildable"], "checkpoint_interval": 1,
           "enable_collaborative_training": False}


@pytest.fixture(scope="module")
def world(tmp_path_factory, inprocess_scheduler):
    """Input files of every kind, and a runs directory with one finished run and damaged copies."""
    root = tmp_path_factory.mktemp("hostile")
    runs = root / "runs"
    preset = root / "two.json"
    preset.write_text(json.dumps(_PRESET))
    run = wb.start_run(str(preset), runs_dir_=runs, scheduler=inprocess_scheduler, run_id="done")
    run.wait(timeout=300)
    assert run.done and run.state.value == "finished_with_failures", run.state  # one model cannot be built

    store = (runs / "done" / "store.sqlite").read_bytes()
    for name, content in {"empty": b"", "truncated": store[: len(store) // 3], "garbage": os.urandom(8192),
                          "no-tables": None}.items():
        folder = runs / f"store-{name}"
        folder.mkdir()
        (folder / "preset.json").write_text((runs / "done" / "preset.json").read_text())
        if content is None:  # a valid SQLite file that is not a run store
            sqlite3.connect(folder / "store.sqlite").execute("CREATE TABLE t(x)").connection.close()
        else:
            (folder / "store.sqlite").write_bytes(content)
    for name, content in {"missing": None, "garbage": b"\x00{not json", "list": b"[1, 2]",
                          "incomplete": json.dumps({**_PRESET, "name": "x", "target_models": None}).encode()}.items():
        folder = runs / f"preset-{name}"
        folder.mkdir()
        (folder / "store.sqlite").write_bytes(store)
        with sqlite3.connect(folder / "store.sqlite") as conn:  # an interrupted run: resume would start
            conn.execute("UPDATE run SET value=? WHERE key='state'", (json.dumps("stopped"),))
        conn.close()
        if content is not None:
            (folder / "preset.json").write_bytes(content)

    files = root / "files"
    files.mkdir()
    (files / "empty.json").write_text("{}")
    (files / "latin1.json").write_bytes('{"mine": {"description": "caf\xe9"}}'.encode("latin-1"))
    (files / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (files / "nested.json").write_text(json.dumps({"mine": {**_PRESET, "models": _nest(20)}}))
    (files / "duplicate.json").write_text('{"mine": {"epochs": 2, "epochs": 3}}')
    (files / "list.json").write_text("[1, 2]")
    (files / "nan.json").write_text('{"mine": {"epochs": NaN}}')
    (files / "a_file").write_text("not a folder")
    rows = "".join(f"{i},{i % 2}\n" for i in range(40))
    (files / "text.csv").write_text("a,b,y\n" + "".join(f"{i},word{i},{i % 2}\n" for i in range(40)))
    (files / "one.csv").write_text("a,y\n1,0\n")
    (files / "two.csv").write_text("a,y\n1,0\n2,1\n")
    (files / "inf.csv").write_text("a,y\n" + rows.replace("5,1\n", "inf,1\n", 1))
    (files / "nan_label.csv").write_text("a,y\n" + rows.replace("5,1\n", "5,\n", 1))
    (files / "latin1.csv").write_bytes(("a,y\n" + rows.replace("5,1", "\xe9,1")).encode("latin-1"))
    (files / "only_target.csv").write_text("y\n" + "".join(f"{i % 2}\n" for i in range(40)))
    (files / "params.json").write_bytes(b'[{"seed": "caf\xe9"}]')
    (files / "params.yaml").write_text("- seed: [1, 2\n")
    read_only = root / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    (files / "notebook.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                      "nbformat_minor": 5}))
    return {"root": root, "runs": runs, "files": files}


def _nest(depth: int) -> dict:
    node: dict = {}
    for _ in range(depth):
        node = {"x": node}
    return node


def _data(path: Path, target: str = "y") -> list[str]:
    spec = json.dumps({"user": {"path": str(path), "target": target}})
    return ["run", "--set", f"data={spec}", "--set", 'datasets=["user"]', "--set", 'target_models=["digits_mlp"]']


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


F, R = "{files}", "{runs}"  # placeholders, filled per test from the module's world
CASES = [
    # preset files
    ("empty preset file", ["run", "--preset", f"{F}/empty.json"], r"empty\.json: holds no preset"),
    ("non-UTF-8 preset file", ["run", "--preset", f"{F}/latin1.json"], r"not UTF-8 text \(byte 0xe9"),
    ("JSON nested 100,000 deep", ["run", "--preset", f"{F}/deep.json"], r"nested too deeply"),
    ("preset nested 20 deep", ["run", "--preset", f"{F}/nested.json"], r"nested more than 16 levels"),
    ("duplicate JSON key", ["run", "--preset", f"{F}/duplicate.json"], r"duplicate key 'epochs'"),
    ("preset file holding a list", ["run", "--preset", f"{F}/list.json"], r"must be an object of named presets"),
    ("NaN in a preset file", ["run", "--preset", f"{F}/nan.json"], r"NaN is not a finite number"),
    ("missing preset file", ["run", "--preset", f"{F}/nope.json"], r"preset file not found"),
    # overrides and limits
    ("negative seed", ["run", "--set", "seed=-1"], r"seed: must be in 0\.\.4294967295, got -1"),
    ("seed of 2**40", ["run", "--set", f"seed={2**40}"], r"seed: must be in 0\.\.4294967295"),
    ("epochs 10**18", ["run", "--set", f"epochs={10**18}"], r"epochs: must be at most 100,000"),
    ("population of a million", ["run", "--set", "models.digits_mlp.population=1000000"],
     r"population: must be at most 64, got 1,000,000"),
    ("100,000 workers", ["run", "--set", "workers=100000"], r"workers: must be at most 256"),
    ("a million threads", ["run", "--set", "models.digits_mlp.resources.threads=1000000"],
     r"threads: must be at most 256"),
    ("NaN learning rate", ["run", "--set", "models.digits_mlp.hyperparameters.lr=NaN"], r"NaN is not a finite number"),
    ("infinite epochs", ["run", "--set", "epochs=1e999"], r"1e999 is not a finite number"),
    ("ANSI escape in a key", ["run", "--set", "\x1b[2J\x1b[31mred=1"], r"unknown key '\\x1b\[2J\\x1b\[31mred'"),
    ("100 KB key", ["run", "--set", "k" * 100_000 + "=1"], r"override key of 100000 characters.*at most 100"),
    ("100 KB value", ["run", "--set", "epochs=" + "x" * 100_000], r"epochs: must be an integer, got .*x\.\.\. \(99\d{3} more characters\)$"),
    ("deep --set value", ["run", "--set", "models=" + "[" * 100_000 + "]" * 100_000], r"nested too deeply"),
    ("run id ending in a newline", ["run", "--run-id", "mine\n"], r"invalid run id 'mine\\n'"),
    ("run id with a slash", ["run", "--run-id", "../escape"], r"invalid run id"),
    ("dataset name with a slash", ["run", "--set", 'data={"a/b": {"path": "x.csv"}}'], r"a dataset name uses letters"),
    # where runs go, and where the cluster is
    ("runs dir that is a file", ["run", "--runs-dir", f"{F}/a_file"], r"runs directory .*a_file is a file"),
    ("runs dir under a file", ["run", "--runs-dir", f"{F}/a_file/runs"], r"cannot be created: .*a_file is a file"),
    ("runs dir not creatable", ["run", "--runs-dir", "/sys/workbench-runs"], r"/sys/workbench-runs is not writable"),
    pytest.param(["run", "--runs-dir", "{root}/read_only/runs"], r"read_only/runs is not writable",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders"),
                 id="read-only runs dir"),
    ("runs dir from the environment is a file", ["run", "--runs-dir", ""], r"runs directory .*a_file is a file"),
    ("http:// scheduler", ["run", "--scheduler", "http://127.0.0.1:8786", "--set", 'target_models=["digits_mlp"]',
                           "--set", 'datasets=["digits"]'], r"'http://' is not a Dask address; use tcp://"),
    # user data files
    ("text feature column", _data(Path(F) / "text.csv"),
     r"dataset 'user' \(.*text\.csv\) fails quality checks: text \(non-numeric\) feature columns \['b'\]"),
    ("one-row table", _data(Path(F) / "one.csv"), r"one\.csv\) fails quality checks: only 1 row"),
    ("two-row table", _data(Path(F) / "two.csv"), r"two\.csv\) fails quality checks: only 2 row"),
    ("inf in a data file", _data(Path(F) / "inf.csv"), r"inf\.csv\) .*column 'a': infinite value in row 6;"),
    ("NaN label", _data(Path(F) / "nan_label.csv"), r"nan_label\.csv\) .*target 'y' is missing in row 6;"),
    ("non-UTF-8 data file", _data(Path(F) / "latin1.csv"), r"dataset 'user': cannot read .*latin1\.csv"),
    ("table of the target alone", _data(Path(F) / "only_target.csv"), r"no feature columns"),
    ("unknown target column", _data(Path(F) / "two.csv", target="label"), r"target column 'label' not found"),
    # damaged runs
    ("status of an empty store", ["status", "store-empty"], r"store-empty/store\.sqlite cannot be read"),
    ("status of a truncated store", ["status", "store-truncated"], r"store\.sqlite cannot be read"),
    ("status of a garbage store", ["status", "store-garbage"], r"store\.sqlite cannot be read .*not a database"),
    ("status of a store without tables", ["status", "store-no-tables"], r"cannot be read \(.*no such table"),
    ("report of a truncated store", ["report", "store-truncated"], r"store\.sqlite cannot be read"),
    ("report of a garbage store", ["report", "store-garbage"], r"store\.sqlite cannot be read"),
    ("report of an empty store", ["report", "store-empty"], r"store\.sqlite cannot be read"),
    ("report --out a file", ["report", "done", "--out", f"{F}/a_file"], r"report folder .*a_file is a file"),
    ("resume of an empty store", ["resume", "store-empty"], r"store\.sqlite cannot be read"),
    ("resume of a garbage store", ["resume", "store-garbage"], r"store\.sqlite cannot be read"),
    ("resume without preset.json", ["resume", "preset-missing"], r"preset\.json cannot be read .*cannot continue"),
    ("resume with garbage preset.json", ["resume", "preset-garbage"], r"preset\.json cannot be read"),
    ("resume with a list preset.json", ["resume", "preset-list"], r"preset\.json must hold a JSON object"),
    ("resume with an incomplete preset.json", ["resume", "preset-incomplete"], r"presets\.x\.target_models: must be a list, got None"),
    ("resume of a finished run", ["resume", "done"], r"run done has finished with failures; nothing to resume"),
    ("status of an unknown run", ["status", "nope"], r"no run 'nope'"),
    ("status of a run id with a newline", ["status", "done\n"], r"invalid run id"),
    # batch
    ("--parallel -3", ["batch", f"{F}/notebook.ipynb", "--parallel", "-3"], r"--parallel must be 1 to 64 .*got -3"),
    ("--parallel 1000", ["batch", f"{F}/notebook.ipynb", "--parallel", "1000"], r"--parallel must be 1 to 64"),
    ("--parallel abc", ["batch", f"{F}/notebook.ipynb", "--parallel", "abc"], r"invalid int value: 'abc'"),
    ("non-UTF-8 params file", ["batch", f"{F}/notebook.ipynb", "--params-file", f"{F}/params.json"], r"not UTF-8 text"),
    ("broken YAML params file", ["batch", f"{F}/notebook.ipynb", "--params-file", f"{F}/params.yaml"],
     r"params\.yaml: not valid YAML"),
    ("batch of an unknown parameter", ["batch", f"{F}/notebook.ipynb", "-p", "nope=1", "--out", f"{R}/batch-x"],
     r"notebook\.ipynb has no parameter\(s\) nope"),
    ("batch --out a file", ["batch", f"{F}/notebook.ipynb", "--out", f"{F}/a_file"], r"output folder .*a_file is a file"),
]


def _fill(argv: list[str], world) -> list[str]:
    return [a.replace(F, str(world["files"])).replace(R, str(world["runs"])).replace("{root}", str(world["root"]))
            for a in argv]


@pytest.mark.parametrize("argv, expected", [c if isinstance(c, type(pytest.param())) else pytest.param(*c[1:], id=c[0])
                                             for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, capsys, monkeypatch, argv, expected):
    argv = _fill(argv, world)
    from_env = argv[-2:] == ["--runs-dir", ""]  # the runs directory from $WORKBENCH_RUNS_DIR
    if from_env:
        argv = argv[:-2]
        monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(world["files"] / "a_file"))
    if "--runs-dir" not in argv and not from_env and argv[0] in ("run", "status", "report", "resume", "batch"):
        argv += ["--runs-dir", str(world["runs"])]
    before, files_before = _tree(world["runs"]), _tree(world["files"])
    code, out, err = _cli(capsys, argv)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), err
    assert re.search(expected, lines[0]), lines[0]
    assert "\x1b" not in err and len(err) < 1000
    assert _tree(world["runs"]) == before  # nothing made, nothing existing changed
    assert _tree(world["files"]) == files_before


def test_status_after_a_model_failed_to_build(world, capsys):
    """The run's store holds a model that never started (NULL columns): status shows it."""
    code, out, err = _cli(capsys, ["status", "done", "--runs-dir", str(world["runs"])])
    assert code == 0, err
    assert re.search(r"hostile_unbuildable@digits\s+failed .*could not build", out)
    assert re.search(r"digits_mlp@digits\s+finished", out)
    snapshot = wb.open_run("done", world["runs"]).snapshot()
    broken = snapshot.models["hostile_unbuildable@digits"]
    assert broken.epoch == 0 and "this model cannot be built" in broken.last_error
    code, out, err = _cli(capsys, ["status", "--runs-dir", str(world["runs"])])
    assert code == 0 and re.search(r"store-garbage\s+unreadable", out) and re.search(r"done\s+finished", out)


def test_a_broken_plugin_is_one_warning_and_the_rest_works(world, capsys, monkeypatch):
    """An entry point whose module does not import: listed models go on, one warning line."""
    from workbench import registry

    site = world["root"] / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[workbench.models]\nbroken = no_such_module_anywhere:Model\n"
                                          "not_a_class = json:dumps\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_loaded", False)
    code, out, err = _cli(capsys, ["models"])
    assert code == 0, err
    assert "digits_mlp" in out and "broken" not in out
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(r"workbench: warning: plugin model 'broken' \(no_such_module_anywhere:Model\) skipped: "
                        r"ModuleNotFoundError: .*", lines[0])
    assert "plugin model 'not_a_class' (json:dumps) skipped: TypeError" in lines[1]


def test_run_piped_into_head_stops_the_run_in_one_line(world, inprocess_scheduler, tmp_path):
    """``workbench run ... | head -1``: the reader leaves; the run stops resumably, one line, exit 2."""
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "run", "--preset", "quick", "--set", 'target_models=["digits_mlp"]',
         "--set", 'datasets=["digits"]', "--set", "epochs=50", "--scheduler", inprocess_scheduler,
         "--runs-dir", str(runs), "--run-id", "piped", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=300)
    assert first == b"run piped\n"
    assert code == 2, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.splitlines() == [f"workbench: error: standard output was closed (broken pipe): run piped stopped; "
                                f"continue with: workbench resume piped --runs-dir {runs}"]
    assert wb.open_run("piped", runs).state.value == "stopped"
