"""One driver per run: the lease in store.sqlite, with real processes (no cluster needed)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workbench.lease import Lease, LeaseHeldError, current_lease
from workbench.store import RunStore


@pytest.fixture
def store_path(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    store.close()
    return tmp_path / "store.sqlite"


def test_a_second_driver_is_refused_while_the_first_holds_the_lease(store_path):
    first = Lease(store_path, "r1").acquire()
    try:
        holder = textwrap.dedent(f"""
            from workbench.lease import Lease, LeaseHeldError
            try:
                Lease({str(store_path)!r}, "r1", "resume").acquire()
            except LeaseHeldError as exc:
                print("REFUSED", exc)
            else:
                print("TAKEN")
        """)
        out = subprocess.run([sys.executable, "-c", holder], capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("REFUSED"), out
        assert "already driven by pid" in out and "workbench set|pause|continue|stop r1" in out
    finally:
        first.release()
    assert current_lease(store_path) is None


def test_a_dead_drivers_lease_is_taken_over(store_path):
    # A process takes the lease and dies without releasing it (as under SIGKILL).
    code = f"import os; from workbench.lease import Lease; Lease({str(store_path)!r}, 'r1').acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    stale = current_lease(store_path)
    assert stale is not None and not stale.alive()
    with Lease(store_path, "r1", "resume") as lease:
        held = current_lease(store_path)
        assert held.pid == lease.pid and held.role == "resume" and held.alive()


def test_the_lease_heartbeat_moves_and_other_hosts_go_stale(store_path, monkeypatch):
    import time

    import workbench.lease as lease_module

    monkeypatch.setattr(lease_module, "HEARTBEAT_S", 0.05)
    with Lease(store_path, "r1"):
        first = current_lease(store_path).heartbeat
        time.sleep(0.3)
        assert current_lease(store_path).heartbeat > first
    remote = lease_module.LeaseInfo("another-host", 1, 0.0, 0.0, time.time(), "run")
    assert remote.alive()
    assert not lease_module.LeaseInfo("another-host", 1, 0.0, 0.0, time.time() - 60, "run").alive()


def test_two_racing_drivers_one_wins(store_path):
    script = textwrap.dedent(f"""
        import time
        from workbench.lease import Lease, LeaseHeldError
        try:
            lease = Lease({str(store_path)!r}, "r1").acquire()
        except LeaseHeldError:
            print("REFUSED")
        else:
            print("TAKEN"); time.sleep(3); lease.release()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["REFUSED", "REFUSED", "TAKEN"]


def test_lease_error_is_a_workbench_error():
    from workbench.errors import WorkbenchError

    assert issubclass(LeaseHeldError, WorkbenchError)
