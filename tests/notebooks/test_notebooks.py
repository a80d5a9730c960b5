"""Every notebook executed headless by papermill with small parameters, and its output
checked: no error cells, a run directory with metrics, static charts, the HTML."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

papermill = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"  # shipped as package data (workbench/notebooks links to them)


@pytest.fixture(scope="module", autouse=True)
def _kernel_sees_the_package():
    # The kernel is a child process started in another folder: it finds the checkout through
    # an absolute PYTHONPATH even where the package is not pip-installed.
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *paths]))
        yield


def _outputs(path: Path) -> list[dict]:
    nb = nbformat.read(str(path), as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _assert_clean(path: Path) -> list[dict]:
    outputs = _outputs(path)
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    return outputs


def _pngs(outputs: list[dict]) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, _kernel_sees_the_package):
    """``collaborative_training.ipynb`` twice, in parallel, through ``workbench batch``."""
    from workbench.batch import parameter_sets, run_batch

    out = tmp_path_factory.mktemp("batch")
    sets = parameter_sets(["preset=digits_mutual", "epochs=1"], ["seed=0,1"])
    jobs = run_batch(NOTEBOOKS / "collaborative_training.ipynb", sets, out, parallel=2, timeout=300,
                     runs_dir=out / "runs")
    return out, jobs


def test_collaborative_training_runs_headless_in_parallel_jobs(batch):
    import workbench as wb

    out, jobs = batch
    assert [j.status for j in jobs] == ["ok", "ok"], [j.error for j in jobs]
    assert len({j.run_dir for j in jobs}) == 2  # separate kernels, separate runs
    assert {j.run_dir.parent for j in jobs} == {out / "runs"}  # both in the runs directory given
    for job in jobs:
        assert job.notebook.parent == job.run_dir  # the rendered notebook lies next to its run
        outputs = _assert_clean(job.notebook)
        pngs = _pngs(outputs)
        assert len(pngs) >= 2 and all(p[:4] == b"\x89PNG" for p in pngs)
        text = "".join(o.get("text", "") for o in outputs)
        assert "run finished" in text
        record = wb.open_run(job.run_dir.name, job.run_dir.parent)
        evals = record.metrics(name="eval/accuracy")
        assert set(evals["model"]) == {"digits_mlp@digits", "digits_cnn@digits"}
        assert evals["value"].max() > 0.5  # digits after one epoch: far above chance (0.1)
        assert record.preset["seed"] == job.parameters["seed"]
        body = job.html.read_text()
        assert "data:image/png;base64" in body and "Cross-model results" in body
        # The report people share: a summary first, code hidden, no link to this machine.
        assert "Summary of run" in body and "hardware" in body and "Live changes" in body
        assert "wb.start_run(" not in body and "127.0.0.1" not in body
    index = (out / "index.html").read_text()
    assert index.count("collaborative_training.html") == 2 and "failed" not in index.split("<table>")[1]


def test_results_analysis_compares_the_runs(batch, tmp_path):
    out, jobs = batch
    from workbench.batch import run_batch

    runs = [j.run_dir for j in jobs]
    # Both runs in one runs directory, as results_analysis expects.
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    for run in runs:
        (runs_dir / run.name).symlink_to(run)
    (job,) = run_batch(NOTEBOOKS / "results_analysis.ipynb",
                       [{"run_ids": [r.name for r in runs], "runs_dir": str(runs_dir)}], tmp_path / "out")
    assert job.status == "ok", job.error
    outputs = _assert_clean(job.notebook)
    html_tables = "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    for run in runs:
        assert run.name in html_tables
    assert "Settings that differ" in "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "±" in html_tables  # mean ± spread over the two seeds
    assert len(_pngs(outputs)) >= 2
    assert job.html.exists()


def test_quickstart_executes_headless_without_hanging(tmp_path):
    out = tmp_path / "quickstart.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "quickstart.ipynb"), str(out), kernel_name="python3",
                               parameters={"epochs": 1, "runs_dir": str(tmp_path / "runs")},
                               cwd=str(tmp_path), progress_bar=False, execution_timeout=300)
    outputs = _assert_clean(out)
    assert _pngs(outputs)
    # Where the panel was, a static copy for viewers without widget state (not an empty Out).
    panel = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert panel and "Workbench control panel" in panel[0]["data"]["text/html"]
    runs = list((tmp_path / "runs").glob("*/store.sqlite"))
    assert len(runs) == 1
    import workbench as wb

    record = wb.open_run(runs[0].parent.name, tmp_path / "runs")
    assert record.state == wb.RunState.FINISHED and not record.metrics(name="eval/accuracy").empty
