"""The local cluster's reuse between runs of one process: real clusters, real workers."""
from __future__ import annotations

import pytest

from workbench import cluster as wbc
from workbench.resources import WorkerSpec

ONE = [WorkerSpec("cpu-0", 1, None, (("CPU", 1.0),))]
OTHER = [WorkerSpec("cpu-0", 1, None, (("CPU", 1.0),)), WorkerSpec("cpu-1", 1, None, (("CPU", 1.0),))]


@pytest.fixture(autouse=True)
def _nothing_parked_after():
    yield
    wbc._close_parked()


def _address(handle) -> str:
    return handle.client.scheduler.address


def test_a_closed_cluster_serves_the_next_run_with_the_same_layout_only():
    first = wbc.start_local_cluster(ONE, dashboard=False)
    address = _address(first)
    first.close()  # parked, not closed
    again = wbc.start_local_cluster(ONE, dashboard=False)
    assert again is first and _address(again) == address
    assert again.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    assert [s.name for s in again.workers.values()] == ["cpu-0"]
    again.close()
    other = wbc.start_local_cluster(OTHER, dashboard=False, preload=())  # another layout: a cluster of its own
    assert _address(other) != address
    other.close()  # parks this one; the one parked before is closed
    assert first.client.status == "closed"
    assert wbc._parked["handle"] is other


def test_reuse_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("WORKBENCH_REUSE_CLUSTER", "0")
    handle = wbc.start_local_cluster(ONE, dashboard=False)
    handle.close()
    assert wbc._parked["handle"] is None and handle.client.status == "closed"


def test_the_dashboard_is_served_only_when_asked(monkeypatch):
    import urllib.error
    import urllib.request

    monkeypatch.setenv("WORKBENCH_REUSE_CLUSTER", "0")
    monkeypatch.delenv("WORKBENCH_DASHBOARD", raising=False)
    plain = wbc.start_local_cluster(ONE)  # the default: no bokeh import, no link
    try:
        assert plain.dashboard_link is None
        port = plain.client.scheduler_info()["services"]["dashboard"]  # the HTTP server: API and health only
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as page:
            assert page.read() == b"ok"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=60)
    finally:
        plain.close()
    monkeypatch.setenv("WORKBENCH_DASHBOARD", "1")  # what `workbench run --dashboard` sets
    served = wbc.start_local_cluster(ONE)
    try:
        with urllib.request.urlopen(served.dashboard_link, timeout=60) as page:
            assert page.status == 200 and b"Dask" in page.read()
    finally:
        served.close()


def _hosts() -> list:
    import psutil

    return [p for p in psutil.Process().children() if "workbench._host" in " ".join(p.cmdline())]


def _fork_servers() -> list:
    """The hosts' fork servers (``workbench/_host.py``): the parents of their workers."""
    return [p for host in _hosts() for p in host.children() if "forkserver" in " ".join(p.cmdline())]


def _worker_processes() -> int:
    """The worker processes of this process's local clusters (each forked by its host's fork server)."""
    return sum(len(server.children()) for server in _fork_servers())


def test_a_warm_up_is_the_cluster_the_start_with_its_layout_gets():
    assert wbc.warm_up(ONE, dashboard=False)
    assert not wbc.warm_up(ONE, dashboard=False)  # one under way already
    handle = wbc.start_local_cluster(ONE, dashboard=False)  # waits for it, takes it
    assert not wbc._warming["thread"].is_alive() and wbc._parked["handle"] is None
    assert handle.reuse_key == wbc._warming["key"] and _worker_processes() == 1  # no second cluster was started
    assert handle.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    handle.close()
    assert not wbc.warm_up(ONE, dashboard=False)  # parked with that layout: nothing to start


def test_a_run_whose_layout_the_preset_shows_starts_its_workers_before_its_plan(runs_dir, tmp_path):
    """The warm-up's cluster trains the run, and a second run of the process reuses it."""
    import json
    import os

    import workbench as wb

    cores = len(os.sched_getaffinity(0))
    preset = {"description": "warm", "datasets": ["digits"], "epochs": 1, "batch_size": 256,
              "target_models": ["digits_mlp"], "enable_collaborative_training": False, "checkpoint_interval": 5,
              "models": {"digits_mlp": {"population": cores, "hyperparameters": {"hidden": 8}}}}
    path = tmp_path / "warm.json"
    path.write_text(json.dumps({"warm": preset}))
    first = wb.start_run(str(path), runs_dir_=runs_dir)
    assert first._cluster.reuse_key == wbc._warming["key"] and _worker_processes() == cores
    assert first.wait(timeout=300) == wb.RunState.FINISHED
    parked = wbc._parked["handle"]
    assert parked is first._cluster
    second = wb.start_run(str(path), runs_dir_=runs_dir)  # the warm-cluster path: the parked one
    assert second._cluster is parked and _worker_processes() == cores
    assert second.wait(timeout=300) == wb.RunState.FINISHED


def test_a_run_refused_while_its_cluster_warms_up_leaves_no_process_behind(tmp_path):
    """Bad hyperparameters are found by the plan, after the warm-up began: the error is
    one line, and the exit ends the nannies and workers still starting."""
    import json
    import os
    import subprocess
    import sys
    import time
    import uuid

    import psutil

    cores = len(os.sched_getaffinity(0))
    preset = {"description": "bad", "datasets": ["digits"], "epochs": 1, "batch_size": 32, "checkpoint_interval": 5,
              "target_models": ["digits_mlp"], "enable_collaborative_training": False,
              "models": {"digits_mlp": {"population": cores, "hyperparameters": {"lr": 50.0}}}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"bad": preset}))
    mark = uuid.uuid4().hex
    code = ("import sys, workbench as wb\n"
            "from workbench import cluster\n"
            f"try:\n    wb.start_run({str(path)!r}, runs_dir_={str(tmp_path / 'runs')!r})\n"
            "except wb.WorkbenchError as exc:\n    print('refused:', exc)\n"
            "print('warmed:', cluster._warming['thread'] is not None)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WORKBENCH_TEST_MARK": mark})
    assert "refused:" in result.stdout and "lr" in result.stdout, result.stdout + result.stderr
    assert "warmed: True" in result.stdout, result.stdout

    def left() -> list[int]:
        out = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("WORKBENCH_TEST_MARK") == mark:
                    out.append(proc.pid)
            except psutil.Error:
                pass
        return out

    deadline = time.time() + 30
    while left() and time.time() < deadline:
        time.sleep(0.5)
    assert left() == []


def test_workers_of_one_environment_share_a_host_that_imported_torch_for_them():
    """The CPU workers' nannies live in one host process, whose fork server imported torch and
    torch._dynamo before forking them: a worker has both at start, and so has a worker its
    nanny restarted after it was killed."""
    import os
    import signal
    import sys
    import time

    handle = wbc.start_local_cluster(OTHER, dashboard=False)
    try:
        # Started means the nannies too: a worker killed before its nanny's start ended was not restarted.
        assert list(handle.client.run(wbc._nanny_status, nanny=True).values()) == ["running", "running"]
        servers = _fork_servers()
        assert len(_hosts()) == 1 and len(servers) == 1 and _worker_processes() == 2
        loaded = handle.client.run(lambda: ("torch._dynamo" in sys.modules, os.getppid(), os.getpid()))
        assert {ppid for _, ppid, _ in loaded.values()} == {servers[0].pid}  # forked by the host's fork server
        assert all(dynamo for dynamo, _, _ in loaded.values())
        assert sorted(s.name for s in handle.workers.values()) == ["cpu-0", "cpu-1"]
        victims = {pid for _, _, pid in loaded.values()}
        for victim in victims:  # both at once, just after the start: each nanny restarts its own
            os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            try:
                after = handle.client.run(lambda: ("torch._dynamo" in sys.modules, os.getpid()))
            except Exception:  # the scheduler may still list the dead workers
                after = {}
            if len(after) == 2 and not victims & {pid for _, pid in after.values()}:
                break
            assert time.monotonic() < deadline, "the killed workers were not restarted"
            time.sleep(0.5)
        assert all(dynamo for dynamo, _ in after.values()) and handle._healthy()
    finally:
        handle.close_now()
    assert not _hosts()  # closing the cluster ends its host


def test_the_hosts_group_workers_by_environment_and_keep_their_names():
    cpu = [WorkerSpec(f"cpu-{i}", 1, None, (("CPU", 1.0),)) for i in range(3)]
    gpu = [WorkerSpec("gpu0-0", 1, 0, (("GPU", 1.0),), "GPU-a"), WorkerSpec("gpu1-1", 1, 1, (("GPU", 1.0),), "GPU-b")]
    hosts = wbc._hosts(gpu + cpu)
    assert [(key, [s.name for s in members]) for key, members in hosts] == \
        [("gpu0-0", ["gpu0-0"]), ("gpu1-1", ["gpu1-1"]), ("cpu-", ["cpu-0", "cpu-1", "cpu-2"])]
    # Two groups with one prefix: Dask names a group's workers key + suffix, so the second
    # group gets a process a worker rather than a key that is taken.
    two = [WorkerSpec("w-0", 1), WorkerSpec("w-1", 1), WorkerSpec("w-2", 2), WorkerSpec("w-3", 2)]
    assert [key for key, _ in wbc._hosts(two)] == ["w-", "w-2", "w-3"]


def test_the_start_waits_for_the_nannies_and_names_those_that_never_start():
    class Client:
        def __init__(self, answers):
            self.answers, self.calls = answers, 0

        def run(self, function, nanny=False):
            assert function is wbc._nanny_status and nanny
            self.calls += 1
            return self.answers[min(self.calls, len(self.answers)) - 1]

    late = Client([{"a": "starting", "b": "running"}, {"a": "running"}, {"a": "running", "b": "running"}])
    wbc._wait_for_nannies(late, 2, timeout=10)
    assert late.calls == 3
    stuck = Client([{"a": "starting", "b": "running"}])
    with pytest.raises(TimeoutError, match="starting"):
        wbc._wait_for_nannies(stuck, 2, timeout=0.1)
