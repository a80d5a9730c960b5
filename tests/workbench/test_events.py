"""The event stream and the command type, without a cluster: a real store in a temp dir."""
from __future__ import annotations

import re
from pathlib import Path

from workbench.commands import Command, CommandOp
from workbench.events import (EpochEnd, Event, EventBus, EventKind, LogFiles, LogLine, Metrics, StoreHandler,
                              Subscribers)
from workbench.store import RunStore, read_store


def test_one_emit_reaches_the_store_the_logs_and_the_subscribers(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    received, callbacks = [], []

    def broken(message):
        raise RuntimeError("a broken subscriber")

    bus = EventBus([StoreHandler(store), LogFiles(tmp_path / "logs"), Subscribers(callbacks)])
    callbacks += [broken, received.append]  # subscribed after the bus was made, and one is broken
    bus.event(EventKind.HPARAM, "m", {"name": "lr", "new": 0.1, "id": 7, "client": "cli:h:1"})
    bus.emit(Metrics((("m", 1, 10, "train/loss", 0.5, 1.0),), live=True))
    bus.emit(Metrics((("ctl", 1, 1, "ctl/reward", 2.0, 1.0),)))  # the store only
    bus.emit(EpochEnd("m", 1, 10, {"eval/accuracy": 0.9}))
    bus.emit(LogLine("m", "hello"))
    store.flush()
    store.close()
    assert [r["type"] for r in received] == ["event", "metrics", "epoch"]
    assert received[0]["kind"] == "hparam" and type(received[0]["kind"]) is str
    assert received[0]["payload"]["id"] == 7
    reader = read_store(tmp_path / "store.sqlite")
    assert reader.events()["kind"].tolist() == ["hparam"]
    assert sorted(reader.metrics()["name"]) == ["ctl/reward", "eval/accuracy", "train/loss"]
    assert (tmp_path / "logs" / "m.log").read_text().endswith("hello\n")


def test_every_kind_the_engine_writes_is_an_event_kind():
    root = Path(__file__).parents[2] / "workbench"
    source = "\n".join(p.read_text() for p in root.glob("*.py"))
    by_name = set(re.findall(r"\bK\.([A-Z_]+)\b", source)) | set(re.findall(r"EventKind\.([A-Z_]+)\b", source))
    assert by_name <= set(EventKind.__members__)
    by_string = set(re.findall(r"add_event\([^,]+, \"(\w+)\"", source))  # written outside the driver (run.py)
    assert by_string and by_string <= {k.value for k in EventKind}
    assert {k.value for k in EventKind} >= {"started", "segment", "checkpoint", "hparam", "knowledge", "error",
                                             "resumed", "finished"}  # docs/contracts.md
    assert Event(EventKind("knowledge_lost")).kind is EventKind.KNOWLEDGE_LOST


def test_a_command_keeps_its_op_as_an_enum_and_its_compact_mailbox_form():
    c = Command("set", "m", "lr", 0.1, id=3, client="panel:h:9")
    assert c.op is CommandOp.SET and c.mailbox() == ("set", "lr", 0.1, 3)
    assert Command(CommandOp.STOP).mailbox() == ("stop",)
    assert c.origin() == {"id": 3, "client": "panel:h:9"}
