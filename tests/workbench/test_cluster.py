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
