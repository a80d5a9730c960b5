"""A real browser: JupyterLab on 127.0.0.1 with a token, quickstart.ipynb run in headless
Chromium (Debian's package driven by Playwright), a learning-rate slider dragged by the
mouse, and the change found in the run's ``events``; the setup form, two runs in a row, a
kernel restart, and the Results tab comparing two runs. Screenshots go to test-artifacts/
(and, with WORKBENCH_UPDATE_SCREENSHOTS=1, the panel, setup, result and comparison pictures
to docs/img/ for the README)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
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


def _store_rows(runs: Path, sql: str) -> list[tuple]:
    """``sql`` over every run store under ``runs``, read-only, while the run writes them."""
    rows: list[tuple] = []
    for store in runs.glob("*/store.sqlite"):
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            rows += conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # the store is being created
            pass
        finally:
            conn.close()
    return rows


def _user_lr_changes(runs: Path) -> list[dict]:
    found = []
    for model, payload in _store_rows(runs, "SELECT model, payload FROM events WHERE kind='hparam'"):
        p = json.loads(payload)
        if p.get("name") == "lr" and p.get("source") == "user":
            found.append({"model": model, **p})
    return found


@pytest.fixture
def lab(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    nb = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            # Long enough that the run is still training when the slider moves.
            cell["source"] = "".join(cell["source"]).replace("epochs = 4", "epochs = 40")
    (tmp_path / "quickstart.ipynb").write_text(json.dumps(nb))
    # User settings: no "get notified about Jupyter news?" prompt over the panel (the news_url
    # option alone does not stop it in JupyterLab 4); every cell rendered, not windowed.
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:"
                                    f"notification?token={token}", timeout=30) as response:
            assert json.load(response)["settings"]["fetchNews"] == "false", "the news prompt is not switched off"
        yield f"http://127.0.0.1:{port}", token, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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


def _segments(runs: Path) -> dict[str, int]:
    """Epochs finished per model (``segment`` events) in the run's store."""
    return dict(_store_rows(runs, "SELECT model, COUNT(*) FROM events WHERE kind='segment' GROUP BY model"))


def _poll(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return result


def _chart_src(page) -> str:
    return page.evaluate("() => { const i = document.querySelector('.workbench-panel .widget-image:not([style*=none])');"
                         " return i && i.complete && i.naturalWidth > 0 ? i.src : ''; }")


def _shoot(page, element, path: Path, margin: int = 8) -> None:
    """The element with a white margin (its own screenshot cuts its border and text flush);
    less above it, where the output area's edge is."""
    box = element.bounding_box()
    top = margin // 2
    page.screenshot(path=str(path), clip={"x": max(box["x"] - margin, 0), "y": max(box["y"] - top, 0),
                                          "width": box["width"] + 2 * margin, "height": box["height"] + top + margin})


def _launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def _open_notebook(page, url: str, token: str, name: str) -> None:
    """Open a notebook in JupyterLab, its kernel started and idle, the side bar collapsed."""
    page.goto(f"{url}/lab/tree/{name}?token={token}", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    select = page.locator(".jp-Dialog button:has-text('Select')")
    try:  # a fresh JupyterLab asks which kernel to start; the notebook's own is preselected
        select.wait_for(state="visible", timeout=15_000)
        select.click()
    except Exception:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           "#jp-main-statusbar :text('Idle')", timeout=120_000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the panel gets the width


def _drag(page, slider) -> None:
    """Nudge a slider's handle a small step up with the mouse, as a user would."""
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 8, y, steps=4)
    page.mouse.up()


def _new_page(browser, width: int, height: int):
    """A page that keeps the browser's console errors and uncaught exceptions, for ``_failed``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.errors = []
    page.on("console", lambda m: m.type in ("error", "warning") and page.errors.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    return page


def _failed(page, name: str, folder: Path) -> None:
    """On a failure: a full-page screenshot, and in the test's output (which CI prints) what
    the browser logged, the text of any widget that failed to render, what the notebook's
    outputs say (a panel's status or error) and the end of each run's driver log."""
    page.screenshot(path=str(ARTIFACTS / f"{name}_failure.png"), full_page=True)
    try:
        outputs = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                                ".map(e => e.innerText.slice(-1500))")
    except Exception as exc:
        outputs = [f"(could not read the page: {exc})"]
    print(f"notebook outputs ({len(outputs)}):", *outputs[-6:], sep="\n  ")
    for log in sorted(folder.glob("**/driver.log")):
        print(f"{log.relative_to(folder)}, its end:", *log.read_text(errors="replace").splitlines()[-40:],
              sep="\n  ")
    print(f"browser log ({len(page.errors)} entries):", *page.errors[-40:], sep="\n  ")
    try:  # a widget view that failed shows "Click to show javascript error": the click shows the message and stack
        broken = page.evaluate("() => [...document.querySelectorAll('.jupyter-widgets-error-widget')].map(e => {"
                               " e.click(); return e.textContent.slice(0, 2000); })")
    except Exception as exc:  # the page itself may be gone
        broken = [f"(could not read the page: {exc})"]
    print(f"widgets that failed to render ({len(broken)}):", *broken[:5], sep="\n  ")


def test_quickstart_in_jupyterlab_moves_a_learning_rate(lab):
    from playwright.sync_api import sync_playwright

    url, token, folder = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = _new_page(browser, 1500, 1500)
        try:
            _open_notebook(page, url, token, "quickstart.ipynb")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            # The panel renders, starts its run and switches to the Live tab with one box per model.
            slider = page.locator(".workbench-tuning .widget-hslider:has(.widget-label:text-is('lr'))").first
            slider.wait_for(state="visible", timeout=180_000)
            page.wait_for_function("document.querySelectorAll('.widget-hslider .noUi-handle').length > 0")
            page.screenshot(path=str(ARTIFACTS / "quickstart_starting.png"))  # before any metric: the placeholder
            _drag(page, slider)
            change = _poll(lambda: _user_lr_changes(folder / "runs"), 120,
                           "the slider's change never reached the run's events")[0]
            assert change["old"] < change["new"] < 10 * change["old"] and change["pinned"]
            page.wait_for_selector(".workbench-panel :text-is('pinned')", timeout=30_000)
            # Screenshot of training in progress: wait (store first, then page) until every model has
            # finished a few epochs and the chart was redrawn since, so it shows curves, not dots.
            _poll(lambda: len(c := _segments(folder / "runs")) == 2 and min(c.values()) >= 3, 180,
                  "the models did not finish 3 epochs")
            for _ in range(2):
                before = _chart_src(page)
                _poll(lambda: _chart_src(page) not in ("", before), 90, "the live chart was not redrawn")
            panel = page.locator(".workbench-panel").first
            panel.evaluate("e => e.scrollIntoView({block: 'center'})")  # all of it on screen
            page.screenshot(path=str(ARTIFACTS / "quickstart_live_page.png"))
            _shoot(page, panel, ARTIFACTS / "quickstart_panel.png")
            # Stop all after a few more epochs, so the comparison charts have something to compare;
            # the run ends and the Results tab shows them.
            _poll(lambda: min(_segments(folder / "runs").values()) >= 6, 180, "the models did not finish 6 epochs")
            page.get_by_role("button", name="Stop all").click()
            page.wait_for_selector(".workbench-panel :text('Final and best metrics')", timeout=180_000)
            page.wait_for_selector(".workbench-panel table.dataframe", timeout=60_000)
            page.wait_for_function("() => { const imgs = [...document.querySelectorAll("
                                   "'.workbench-panel .workbench-results-charts img')];"
                                   " return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                                   timeout=60_000)
            panel.evaluate("e => e.scrollIntoView({block: 'center'})")
            _shoot(page, panel, ARTIFACTS / "quickstart_results.png")
        except Exception:
            _failed(page, "quickstart", folder)
            raise
        finally:
            browser.close()
    if os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS"):  # refresh the README's pictures on purpose only
        docs = ROOT / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / "quickstart_panel.png", docs / "panel.png")
        shutil.copy(ARTIFACTS / "quickstart_results.png", docs / "results.png")


def _steering_notebook(folder: Path) -> None:
    """Two cells: the first starts a run from a panel (a driver process of its own), the
    second, run after a kernel restart, attaches a new panel to that run by id."""
    start = ("from widgets import ControlPanel\n"
             "panel = ControlPanel(preset='digits_mutual', overrides={'epochs': 300}, runs_dir='runs')\n"
             "run = panel.start()\nprint('started', run.id)\npanel")
    attach = ("import workbench as wb\nfrom widgets import ControlPanel\n"
              "run_id = wb.list_runs('runs')['run'].iloc[0]\n"
              "again = ControlPanel(runs_dir='runs')\nagain.attach(run_id)\nprint('attached', run_id, again.run.state.value)\n"
              "again")
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
             for s in (start, attach)]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "steer.ipynb").write_text(json.dumps(nb))


def test_a_run_started_from_the_panel_survives_a_kernel_restart_and_is_steered_again(lab):
    from playwright.sync_api import sync_playwright

    url, token, folder = lab
    _steering_notebook(folder)
    runs = folder / "runs"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = _new_page(browser, 1500, 1500)
        try:
            _open_notebook(page, url, token, "steer.ipynb")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            cells.nth(0).click()
            page.keyboard.press("Shift+Enter")  # the first cell: start from the panel
            page.locator(".jp-OutputArea-output:has-text('started')").wait_for(timeout=240_000)
            _poll(lambda: len(c := _segments(runs)) == 2 and min(c.values()) >= 1, 240, "the run did not train")

            # Restart the kernel from JupyterLab's menu: the run must go on.
            page.get_by_role("menuitem", name="Kernel", exact=True).click()
            page.get_by_text("Restart Kernel…", exact=True).click()
            page.locator(".jp-Dialog button:has-text('Restart')").click()
            page.wait_for_selector("#jp-main-statusbar :text('Idle')", timeout=120_000)
            before = sum(_segments(runs).values())
            _poll(lambda: sum(_segments(runs).values()) > before + 2, 120, "the run stopped with its kernel")

            # A new kernel attaches to it by id and steers it with the panel's slider.
            cells.nth(1).click()
            page.keyboard.press("Shift+Enter")
            page.locator(".jp-OutputArea-output:has-text('attached')").wait_for(timeout=120_000)
            slider = cells.nth(1).locator(".workbench-tuning .widget-hslider:has(.widget-label:text-is('lr'))").first
            slider.wait_for(state="visible", timeout=120_000)
            _drag(page, slider)
            change = _poll(lambda: _user_lr_changes(runs), 120, "the slider's change never reached the run")[0]
            assert change["client"].startswith("attach:") and change["pinned"]
            _poll(lambda: _store_rows(runs, "SELECT payload FROM events WHERE kind='hparam_applied'"), 60,
                  "the trainer never applied the change")
            page.screenshot(path=str(ARTIFACTS / "steer_after_restart.png"))
            cells.nth(1).get_by_role("button", name="Stop all").click()
            _poll(lambda: _store_rows(runs, "SELECT value FROM run WHERE key='state' AND value='\"stopped\"'"), 180,
                  "Stop all from the attached panel did not stop the run")
        except Exception:
            _failed(page, "steer", folder)
            raise
        finally:
            browser.close()


def _panel_notebook(folder: Path) -> None:
    """One cell: a panel on a short mutual-learning run, nothing started. 16 epochs: with
    4 the run (4 s on 2 cores) could end before the test's Pause click reached the CNN."""
    source = ("from widgets import ControlPanel\n"
              "panel = ControlPanel(preset='digits_mutual', overrides={'epochs': 16}, runs_dir='runs')\npanel")
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (folder / "panel.ipynb").write_text(json.dumps(nb))


def _run_state(run_dir: Path) -> str | None:
    conn = sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM run WHERE key='state'").fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        conn.close()
    return json.loads(row[0]) if row else None


def _run_dirs(runs: Path) -> list[Path]:
    return sorted(p.parent for p in runs.glob("*/store.sqlite"))


def test_setup_form_double_click_waiting_partner_and_two_runs_in_a_row(lab):
    """The panel as a person uses it: a learning rate set in the Setup form, Start double
    clicked (one run, "starting workers..." at once), the CNN paused and the MLP reading
    "waiting for" it, and after the run a second one started from the same panel."""
    from playwright.sync_api import sync_playwright

    url, token, folder = lab
    _panel_notebook(folder)
    runs = folder / "runs"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = _new_page(browser, 1500, 2600)
        try:
            _open_notebook(page, url, token, "panel.ipynb")
            page.locator(".jp-Notebook .jp-CodeCell").first.click()
            page.keyboard.press("Shift+Enter")
            setup = page.locator(".workbench-setup").first
            setup.wait_for(state="visible", timeout=120_000)
            # The MLP's box of the Setup form (the innermost box holding its title), its lr slider.
            mlp_box = setup.locator(".widget-vbox:has(:text('digits_mlp hyperparameters'))").last
            slider = mlp_box.locator(".widget-hslider:has(.widget-label:text-is('lr'))").first
            slider.wait_for(state="visible", timeout=60_000)
            before = slider.locator(".widget-readout").inner_text()
            _drag(page, slider)
            _poll(lambda: slider.locator(".widget-readout").inner_text() != before, 30, "the setup slider did not move")
            chosen = float(slider.locator(".widget-readout").inner_text())
            setup.evaluate("e => e.scrollIntoView({block: 'start'})")
            _shoot(page, setup, ARTIFACTS / "setup_form.png")

            page.locator(".workbench-panel .lm-TabBar-tab:has-text('Live')").first.click()
            start = page.locator(".workbench-panel button[title='Start']").first
            start.dblclick()
            page.wait_for_selector(".workbench-panel :text('starting workers')", timeout=5_000)
            assert start.is_disabled()
            _poll(lambda: _run_dirs(runs), 240, "no run started")
            first = _run_dirs(runs)[0]
            preset = json.loads((first / "preset.json").read_text())
            assert preset["models"]["digits_mlp"]["hyperparameters"]["lr"] == pytest.approx(chosen, rel=0.01)

            # Pause the CNN once both train: its partner, the MLP, waits for it and says so.
            _poll(lambda: len(c := _segments(runs)) == 2 and min(c.values()) >= 1, 240, "the run did not train")
            cnn_row = page.locator(".widget-hbox:has(> .widget-label:text-is('digits_cnn@digits'))").first
            cnn_row.get_by_role("button", name="Pause").click()
            mlp_row = page.locator(".widget-hbox:has(> .widget-label:text-is('digits_mlp@digits'))").first
            mlp_row.locator(":text('waiting for peer digits_cnn@digits (paused)')").wait_for(timeout=120_000)
            assert "steps/s" not in mlp_row.inner_text() and "ETA" not in mlp_row.inner_text()
            page.screenshot(path=str(ARTIFACTS / "panel_waiting.png"))
            cnn_row.get_by_role("button", name="Resume").click()

            _poll(lambda: _run_state(first) == "finished", 300, "the first run did not finish")
            assert _run_dirs(runs) == [first], "the double click started two runs"
            page.wait_for_selector(".workbench-panel :text('Final and best metrics')",
                                   timeout=120_000)
            page.locator(".workbench-panel .lm-TabBar-tab:has-text('Live')").first.click()
            _poll(lambda: start.is_enabled(), 60, "Start stayed disabled after the run ended")
            assert page.get_by_role("button", name="Stop all").is_disabled()
            start.click()
            _poll(lambda: len(_run_dirs(runs)) == 2, 240, "the second run did not start")
            second = next(d for d in _run_dirs(runs) if d != first)
            _poll(lambda: _run_state(second) == "running", 120, "the second run is not running")
            stop = page.get_by_role("button", name="Stop all")
            _poll(lambda: stop.is_enabled(), 60, "Stop all is off for the second run")
            stop.click()
            _poll(lambda: _run_state(second) == "stopped", 240, "the second run did not stop")
        except Exception:
            _failed(page, "panel", folder)
            raise
        finally:
            browser.close()
    if os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS"):
        docs = ROOT / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / "setup_form.png", docs / "setup.png")


def test_results_tab_compares_two_runs_in_jupyterlab(lab):
    """The panel's Results tab comparing two real runs that differ by their seed: the user
    picks both, presses Compare, and sees the runs table, the settings that differ and
    mean ± spread, with the learning curves and their band."""
    from playwright.sync_api import sync_playwright

    url, token, folder = lab
    ids = _two_runs(folder / "runs")
    _compare_notebook(folder)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = _new_page(browser, 1400, 2200)
        try:
            _open_notebook(page, url, token, "compare.ipynb")
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
            _failed(page, "compare", folder)
            raise
        finally:
            browser.close()
    if os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS"):  # refresh the README's picture on purpose only
        shutil.copy(ARTIFACTS / "compare_results.png", ROOT / "docs" / "img" / "compare.png")
