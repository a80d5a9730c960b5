import pytest
import torch

from workbench.checkpoint import DiskSaver, check_name, should_checkpoint
from workbench.errors import WorkbenchError


def test_policy():
    assert [e for e in range(1, 12) if should_checkpoint(e, 5, 11)] == [5, 10, 11]


def test_save_load_round_trip_and_pruning(tmp_path):
    saver = DiskSaver(tmp_path, keep=2)
    for epoch in (1, 2, 3):
        saver.save("m", epoch, {"w": torch.full((3,), float(epoch)), "epoch": epoch})
    assert saver.epochs("m") == [2, 3]
    epoch, state = saver.load_latest("m")
    assert epoch == 3 and torch.equal(state["w"], torch.full((3,), 3.0))
    assert not list((tmp_path / "m").glob(".*tmp"))


def test_corrupt_latest_falls_back_to_previous(tmp_path):
    saver = DiskSaver(tmp_path)
    saver.save("m", 1, {"w": torch.ones(2)})
    path = saver.save("m", 2, {"w": torch.zeros(2)})
    path.write_bytes(path.read_bytes()[:20])  # truncated
    epoch, state = saver.load_latest("m")
    assert epoch == 1 and torch.equal(state["w"], torch.ones(2))


def test_checkpoints_cannot_carry_code(tmp_path):
    saver = DiskSaver(tmp_path)
    saver.save("m", 1, {"w": torch.ones(1)})

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import hashlib, io

    buffer = io.BytesIO()
    torch.save({"x": Evil()}, buffer)
    path = tmp_path / "m" / "epoch_000002.pt"
    path.write_bytes(buffer.getvalue())
    path.with_suffix(".sha256").write_text(hashlib.sha256(buffer.getvalue()).hexdigest())
    with pytest.raises(Exception):
        saver.load(path)
    assert saver.load_latest("m")[0] == 1


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a..b"])
def test_names_cannot_escape(bad):
    with pytest.raises(WorkbenchError):
        check_name(bad)


def test_a_time_floor_skips_interval_checkpoints_taken_too_soon_but_never_the_last():
    from workbench.checkpoint import should_checkpoint

    assert should_checkpoint(10, 5, 20, since=2.0, min_seconds=10.0) is False
    assert should_checkpoint(10, 5, 20, since=12.0, min_seconds=10.0) is True
    assert should_checkpoint(11, 5, 20, since=12.0, min_seconds=10.0) is False  # not on the interval
    assert should_checkpoint(20, 5, 20, since=0.1, min_seconds=10.0) is True  # the last epoch, always
    assert should_checkpoint(10, 5, 20, since=0.1, min_seconds=0.0) is True  # no floor: every interval


def _worker_bytes(epoch: int, step: int) -> bytes:
    """A trainer checkpoint as a worker serializes it (``torch.save`` of trainer and engine)."""
    import io

    buffer = io.BytesIO()
    torch.save({"trainer": {"w": torch.full((2,), float(epoch))}, "engine": {"step": step}}, buffer)
    return buffer.getvalue()


def test_bytes_from_a_worker_are_written_with_the_drivers_record_and_read_back_both_ways(tmp_path):
    saver = DiskSaver(tmp_path, keep=2)
    for epoch in (1, 2, 3):
        saver.write("m", epoch, _worker_bytes(epoch, 10 * epoch), {"step": 10 * epoch,
                                                                    "coordinator": {"hparams": {"lr": epoch / 10}}})
    assert saver.epochs("m") == [2, 3]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        f"epoch_00000{e}.{x}" for e in (2, 3) for x in ("json", "pt", "sha256")]  # pruned with its record
    epoch, data, record = saver.read_latest("m")
    assert (epoch, data, record["step"]) == (3, _worker_bytes(3, 30), 30)
    assert record["coordinator"] == {"hparams": {"lr": 0.3}}
    epoch, payload = saver.load_latest("m")  # what a reader of files (load_trainer, a notebook) sees
    assert epoch == 3 and payload["coordinator"] == {"hparams": {"lr": 0.3}} and payload["engine"]["step"] == 30
    assert torch.equal(payload["trainer"]["w"], torch.full((2,), 3.0))


def test_a_record_that_does_not_belong_to_its_file_makes_the_checkpoint_invalid(tmp_path):
    import json

    saver = DiskSaver(tmp_path)
    for epoch in (1, 2):
        saver.write("m", epoch, _worker_bytes(epoch, epoch), {"step": epoch, "coordinator": {}})
    newest = tmp_path / "m" / "epoch_000002.json"
    newest.write_text(json.dumps({**json.loads(newest.read_text()), "sha256": "0" * 64}))
    skipped = {}
    assert saver.read_latest("m", skipped=skipped)[0] == 1 and skipped == {2: "checksum mismatch"}
    newest.write_text("{not json")
    assert saver.load_latest("m")[0] == 1


def test_a_checkpoint_from_before_records_is_read_with_its_coordinator_part_inside(tmp_path):
    saver = DiskSaver(tmp_path)
    saver.save("m", 4, {"trainer": {"w": torch.ones(1)}, "engine": {"step": 12}, "coordinator": {"pinned": ["lr"]}})
    epoch, data, record = saver.read_latest("m")
    assert (epoch, record) == (4, {"step": 12, "coordinator": {"pinned": ["lr"]}})
    assert not (tmp_path / "m" / "epoch_000004.json").exists()


def test_an_orphaned_record_is_swept_with_the_other_leftovers(tmp_path):
    saver = DiskSaver(tmp_path)
    saver.write("m", 1, _worker_bytes(1, 1), {"step": 1, "coordinator": {}})
    (tmp_path / "m" / "epoch_000002.json").write_text("{}")  # its checkpoint never got renamed into place
    assert [p.name for p in saver.sweep()] == ["epoch_000002.json"]
    assert saver.read_latest("m")[0] == 1
