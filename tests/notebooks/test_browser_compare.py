"""A real browser: the panel's Results tab comparing two real runs in JupyterLab (headless
Chromium driven by Playwright). Two runs of digits_mutual that differ by their seed are made
first; in the notebook the user picks both, presses Compare, and sees the runs table, the
settings that differ and mean ± spread, with the learning curves and their band. The
screenshot goes to test-artifacts/ (and, with WORKBENCH_UPDATE_SCREENSHOTS=1, to
docs/img/compare.png for the README). The JupyterLab fixture follows test_browser.py's."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed"
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return "jupyterlab is not installed in this environment"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_runs(runs: Path) -> list[str]:
    import workbench as wb

    ids = []
    for seed in (0, 1):
        run = wb.start_run("digits_mutual", {"epochs": 2, "seed": seed}, runs)
        assert run.wait(timeout=300) == wb.RunState.FINISHED
        ids.append(run.id)
    return ids


def _compare_notebook(folder: Path) -> None:
    source = ("from widgets import ControlPanel\n"
              "panel = ControlPanel(preset='digits_mutual', runs_dir='runs')\n"
              "panel.results.logic.runs_dir = str(panel.runs_dir)\n"
              "panel.results.logic.refresh_runs()\n"
              "panel.tabs.selected_index = 2\n"
              "panel.results.sections.selected_index = 1\n"
              "panel")
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
    nb = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "compare.ipynb").write_text(json.dumps(nb))


@pytest.fixture
def lab(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    ids = _two_runs(tmp_path / "runs")
    _compare_notebook(tmp_path)
    settings = tmp_path / "settings" / "@jupyterlab"
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True", "--allow-root"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token, ids
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _shoot(page, element, path: Path, margin: int = 8) -> None:
    box = element.bounding_box()
    page.screenshot(path=str(path), clip={"x": max(box["x"] - margin, 0), "y": max(box["y"] - margin // 2, 0),
                                          "width": box["width"] + 2 * margin, "height": box["height"] + margin})


def test_results_tab_compares_two_runs_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, token, ids = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        try:
            page.goto(f"{url}/lab/tree/compare.ipynb?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            select = page.locator(".jp-Dialog button:has-text('Select')")
            try:  # a fresh JupyterLab asks which kernel to start; the notebook's own is preselected
                select.wait_for(state="visible", timeout=15_000)
                select.click()
            except Exception:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                                   "#jp-main-statusbar :text('Idle')", timeout=120_000)
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            compare = page.locator(".workbench-panel .workbench-compare").first
            compare.wait_for(state="visible", timeout=120_000)
            choice = compare.locator("select").first
            page.wait_for_function("() => document.querySelectorAll('.workbench-compare select option').length >= 2",
                                   timeout=60_000)
            choice.select_option(ids)  # both runs chosen, as with ctrl-click
            compare.get_by_role("button", name="Compare").click()
            page.wait_for_selector(".workbench-compare :text('Settings that differ')", timeout=120_000)
            page.wait_for_function("() => { const i = document.querySelector('.workbench-compare img');"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            text = compare.inner_text()
            for run_id in ids:
                assert run_id in text
            assert "seed" in text and "±" in text  # the seeds folded: mean ± spread
            compare.evaluate("e => e.scrollIntoView({block: 'start'})")
            _shoot(page, compare, ARTIFACTS / "compare_results.png")
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "compare_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    if os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS"):  # refresh the README's picture on purpose only
        shutil.copy(ARTIFACTS / "compare_results.png", ROOT / "docs" / "img" / "compare.png")
