"""The control channel through store.sqlite: commands in, acknowledgements out (no cluster)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from workbench.channel import Inbox, StoreTail, send_command, wait_for_ack
from workbench.store import RunStore


def test_commands_from_another_process_reach_the_driver_in_order_and_are_acknowledged(tmp_path):
    path = tmp_path / "store.sqlite"
    store = RunStore(path, flush_interval=0.01)
    received = []

    def deliver(record):  # what a driver does: apply it, then record events carrying its id
        received.append(record)
        store.add_event(record.model, "hparam", {"name": record.name, "new": record.value, "id": record.id})
        store.add_event(record.model, "hparam_applied", {"name": record.name, "step": 41 + record.id,
                                                         "id": record.id})

    inbox = Inbox(path, deliver).start()
    try:
        sender = textwrap.dedent(f"""
            from workbench.channel import send_command, wait_for_ack
            ids = [send_command({str(path)!r}, "set", "m@d", "lr", v, client="cli:test:1") for v in (0.1, 0.2)]
            print(ids, wait_for_ack({str(path)!r}, ids[1], "set", timeout=20))
        """)
        out = subprocess.run([sys.executable, "-c", sender], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "'hparam_applied': {'name': 'lr', 'step': 43, 'id': 2}" in out.stdout
        assert [(r.id, r.value, r.client) for r in received] == [(1, 0.1, "cli:test:1"), (2, 0.2, "cli:test:1")]
    finally:
        inbox.stop()
        store.close()


def test_a_command_the_driver_cannot_take_is_marked_refused_not_lost(tmp_path):
    import sqlite3

    path = tmp_path / "store.sqlite"
    RunStore(path).close()

    def deliver(record):
        raise ValueError("no model 'x'")

    inbox = Inbox(path, deliver).start()
    command = send_command(path, "pause", "x")
    time.sleep(0.5)
    inbox.stop()
    status = sqlite3.connect(path).execute("SELECT status FROM commands WHERE id=?", (command,)).fetchone()[0]
    assert status == "refused: no model 'x'"


def test_without_a_driver_a_command_stays_queued_and_the_ack_times_out(tmp_path):
    path = tmp_path / "store.sqlite"
    RunStore(path).close()
    command = send_command(path, "stop")
    started = time.time()
    assert wait_for_ack(path, command, "stop", timeout=0.3) == {}
    assert time.time() - started < 2


def test_the_tail_delivers_what_another_writer_adds(tmp_path):
    path = tmp_path / "store.sqlite"
    store = RunStore(path, flush_interval=0.01)
    store.add_event(None, "started", {})
    store.flush()
    got, done = [], threading.Event()

    def callback(message):
        got.append(message)
        if message["type"] == "epoch":
            done.set()

    tail = StoreTail(path, callback, interval=0.05)
    store.add_metrics([("m@d", 1, 10, "train/loss", 0.5, time.time())])
    store.add_event("m@d", "segment", {"epoch": 1, "step": 10})
    assert done.wait(10)
    tail.stop()
    store.close()
    kinds = [(m["type"], m.get("kind")) for m in got]
    assert ("event", "started") not in kinds  # only what came after the tail began
    assert kinds == [("metrics", None), ("event", "segment"), ("epoch", None)]
    assert got[0]["rows"] == [("m@d", 1, 10, "train/loss", 0.5, got[0]["rows"][0][5])]
