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
