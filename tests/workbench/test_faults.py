"""Injected faults on ``digits_mutual``-sized runs: each runs the real CLI in a subprocess
(``python -m workbench``, or a script that defines a misbehaving model, as a notebook
would, and then calls the CLI's ``main``) with a real local Dask cluster, and checks the
exit code, the one-line message, no traceback, nothing half-made and nothing kept lost.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench import _faults
from workbench.checkpoint import DiskSaver
from workbench.presets import validate_preset
from workbench.store import read_store

ROOT = Path(__file__).resolve().parents[2]

# Misbehaving models, defined in the script's __main__ (shipped to the workers by value).
MODELS = '''
import os, sys, time, torch
import workbench as wb


class _Linear(wb.Trainer):
    accepts = ("images",)
    hyperparameters = {"lr": wb.HParam(float, 0.05, low=1e-6, high=1.0, log=True, live=True),
                       "steps": wb.HParam(int, 20, low=1, high=100_000),
                       "batch_size": wb.HParam(int, 32, low=1, high=4096)}
    metrics = ("train/loss", "eval/loss")

    def __init__(self, hparams, data, resources, seed):
        super().__init__(hparams, data, resources, seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 8, generator=g)
        self.y = self.x.sum(1)
        self.w = torch.zeros(8)

    @property
    def steps_per_epoch(self):
        return self.hparams["steps"]

    def train_step(self, ctx):
        self.misbehave(ctx)
        grad = 2 * self.x.T @ (self.x @ self.w - self.y) / len(self.x)
        self.w = self.w - self.hparams["lr"] * grad
        return {"train/loss": float(((self.x @ self.w - self.y) ** 2).mean())}

    def misbehave(self, ctx):
        pass

    def evaluate(self):
        return {"eval/loss": float(((self.x @ self.w - self.y) ** 2).mean())}

    def state_dict(self):
        return {"w": self.w.clone()}

    def load_state_dict(self, state):
        self.w = state["w"].clone()


@wb.register_model("fault_killer")
class Killer(_Linear):
    """From epoch 2 on, its step kills the worker process it runs in."""

    def misbehave(self, ctx):
        if ctx.epoch >= 2:
            os._exit(1)


@wb.register_model("fault_hang")
class Hang(_Linear):
    """From epoch 2 on, its step never returns."""

    def misbehave(self, ctx):
        while ctx.epoch >= 2:
            time.sleep(0.1)


from workbench.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _preset(tmp_path: Path, models: list[str], **extra) -> Path:
    # A checkpoint every epoch, whatever its length (no time floor): the tests check which survive.
    preset = {"description": "a fault", "datasets": ["digits"], "target_models": models, "epochs": 4,
              "batch_size": 32, "checkpoint_interval": 1, "checkpoint_seconds": 0,
              "enable_collaborative_training": True, **extra}
    path = tmp_path / "fault.json"
    path.write_text(json.dumps({"fault": preset}))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "faulty_models.py"
    path.write_text(MODELS)
    return path


def _cli(tmp_path: Path, *args: str, script: bool = False, timeout: float = 400,
         **popen) -> subprocess.CompletedProcess:
    """The CLI in a subprocess: ``python -m workbench`` or the script defining the faulty models."""
    head = [sys.executable, str(_script(tmp_path))] if script else [sys.executable, "-m", "workbench"]
    quiet = ["--quiet", "--no-report"] if args[0] in ("run", "resume") else []
    return subprocess.run([*head, *args, *quiet], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=tmp_path, **popen)


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]


def _only_run(runs: Path) -> Path:
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return run_dir


def _valid_checkpoints(run_dir: Path, model: str) -> list[int]:
    saver = DiskSaver(run_dir / "checkpoints")
    epochs = saver.valid_epochs(model)
    for epoch in epochs:  # they load, not only match their checksum
        saver.load(saver.root / model / f"epoch_{epoch:06d}.pt")
    return epochs


def test_segment_timeout_default_and_validation():
    assert _faults.segment_timeout(None, None) == 600  # nothing seen yet: the floor
    assert _faults.segment_timeout(None, 50.0, epochs=2) == 2000  # 20 x a slow model's segment
    assert _faults.segment_timeout(30, 50.0) == 30  # the preset wins
    assert not _faults.progressed(1, lost_at=2) and _faults.progressed(2, lost_at=2)
    base = {"description": "d", "datasets": ["digits"], "epochs": 1, "batch_size": 8, "target_models": ["digits_mlp"],
            "checkpoint_interval": 1, "enable_collaborative_training": False}
    assert validate_preset("p", {**base, "segment_timeout": 5}) == []
    for bad in (0, -1, float("inf"), 10**9, "10", True):
        (problem,) = validate_preset("p", {**base, "segment_timeout": bad})
        assert problem.startswith("presets.p.segment_timeout: must be")


def test_plan_restore_refuses_unusable_checkpoints_and_reports_fallbacks(tmp_path):
    import torch

    from workbench._restore import plan_restore
    from workbench.errors import CheckpointError, WorkbenchError

    saver = DiskSaver(tmp_path)
    for name, epochs in (("a", (2, 4)), ("b", (2, 4)), ("c", (2,))):
        for epoch in epochs:
            saver.save(name, epoch, {"w": torch.zeros(2), "epoch": epoch})
    (tmp_path / "b" / "epoch_000004.pt").write_bytes(b"truncated")
    models, links = {"a": 6, "b": 6, "c": 6, "lonely": 6}, [("a", "b")]
    plan = plan_restore(saver, models, [], links)
    assert plan.starts == {"a": 2, "b": 2, "c": 2, "lonely": 0}  # a waits for b's newest valid epoch
    assert plan.lines() == ["a resumes from epoch 2; passed over: epoch 4 (kept back to a common epoch with its peers)",
                            "b resumes from epoch 2; passed over: epoch 4 (checksum mismatch)"]
    (tmp_path / "b" / "epoch_000002.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"b has no loadable checkpoint \(epoch 2: checksum mismatch, "
                                              r"epoch 4: checksum mismatch\); restart it from epoch 0 with "
                                              r"--allow-restart b"):
        plan_restore(saver, models, [], links)
    allowed = plan_restore(saver, models, [], links, allow_restart=["b"])
    assert allowed.starts == {"a": 4, "b": 0, "c": 2, "lonely": 0}
    assert [f["model"] for f in allowed.fallbacks if f["restart"]] == ["b"]
    with pytest.raises(WorkbenchError, match="--allow-restart z: no such model"):
        plan_restore(saver, models, [], links, allow_restart=["z"])
    # A peer that never reached a checkpoint is no loss: the coupled ones start over with it, said so.
    fresh = plan_restore(saver, {"c": 6, "lonely": 6}, [], [("c", "lonely")])
    assert fresh.starts == {"c": 0, "lonely": 0} and fresh.lines() == [
        "c resumes from epoch 0; passed over: epoch 2 (kept back to a common epoch with its peers)"]
    # Under a controller every model and the controller resume from one epoch (the quick preset).
    saver.save("ctl", 2, {"controller": {}})
    saver.save("ctl", 4, {"controller": {}})
    governed = plan_restore(saver, {"a": 6, "c": 6}, ["ctl"])
    assert governed.starts == {"a": 2, "c": 2, "ctl": 2}
    assert "ctl resumes from epoch 2; passed over: epoch 4 (kept back to a common epoch with its peers)" in governed.lines()


@pytest.mark.slow
@pytest.mark.timeout(1500)  # each nanny restart can take minutes on a loaded machine
def test_a_model_that_kills_its_worker_fails_alone_and_the_healthy_model_finishes(tmp_path):
    """Every replacement worker the killer gets dies too: after max_failures+1 deaths it is
    marked failed, the healthy model (on its own worker, never handed the killer) finishes
    with all its checkpoints, and the run ends with failures instead of hanging."""
    runs = tmp_path / "runs"
    preset = _preset(tmp_path, ["digits_mlp", "fault_killer"], max_failures=2)
    # A hang (the run waiting on zero workers) shows as the subprocess timing out. On a
    # loaded machine each nanny restart takes up to a minute or more.
    proc = _cli(tmp_path, "run", "--preset", str(preset), "--runs-dir", str(runs), script=True, timeout=1200)
    assert proc.returncode == 1, proc.stderr[-3000:]
    _no_traceback(proc)
    assert "fault_killer@digits failed: lost its worker 3 times" in proc.stderr
    run_dir = _only_run(runs)
    store = read_store(run_dir / "store.sqlite")
    states = store.models().set_index("model")["state"].to_dict()
    assert states == {"digits_mlp@digits": "finished", "fault_killer@digits": "failed"}
    deaths = store.events(kind="error", model="fault_killer@digits")
    assert sum(p.get("kind") == "worker" for p in deaths["payload"]) == 3
    assert store.events(kind="error", model="digits_mlp@digits").empty  # never lost a worker or a state
    assert _valid_checkpoints(run_dir, "digits_mlp@digits") == [2, 3, 4]
    assert store.metrics(model="digits_mlp@digits", name="eval/test_accuracy")["epoch"].max() == 4


@pytest.mark.slow
def test_a_hung_step_fails_its_model_after_segment_timeout(tmp_path):
    runs = tmp_path / "runs"
    preset = _preset(tmp_path, ["digits_mlp", "fault_hang"], segment_timeout=8)
    proc = _cli(tmp_path, "run", "--preset", str(preset), "--runs-dir", str(runs), script=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    _no_traceback(proc)
    assert "fault_hang@digits failed: segment hung: no result after 8 s" in proc.stderr
    run_dir = _only_run(runs)
    store = read_store(run_dir / "store.sqlite")
    assert store.models().set_index("model")["state"].to_dict() == {"digits_mlp@digits": "finished",
                                                                    "fault_hang@digits": "failed"}
    assert _valid_checkpoints(run_dir, "digits_mlp@digits") == [2, 3, 4]
    assert _valid_checkpoints(run_dir, "fault_hang@digits") == [1]


@pytest.mark.slow
def test_the_first_sigterm_during_a_hung_step_stops_the_run_promptly(tmp_path):
    runs = tmp_path / "runs"
    preset = _preset(tmp_path, ["fault_hang"], epochs=3)  # the default timeout: minutes
    proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), "run", "--preset", str(preset), "--runs-dir",
                             str(runs), "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # epoch 1 checkpointed: epoch 2 hangs now
            found = list(runs.glob("*/checkpoints/fault_hang@digits/epoch_000001.pt"))
            if found:
                break
            time.sleep(0.5)
        assert found, "the hung model never finished its first epoch"
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)  # without the stop grace it never ends
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "SIGTERM: stopping" in err
    assert "Traceback" not in out + err, err[-3000:]
    assert "stopped" in out and "workbench resume" in out
    run_dir = _only_run(runs)
    assert read_store(run_dir / "store.sqlite").run_info()["state"] == "stopped"
    assert _valid_checkpoints(run_dir, "fault_hang@digits") == [1]


def _stopped_run(tmp_path: Path, runs: Path, run_id: str, epochs_checkpointed: int, *extra: str) -> Path:
    """A digits_mutual run stopped by SIGTERM once both models checkpointed some epochs."""
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--preset", "digits_mutual", "--runs-dir",
                             str(runs), "--run-id", run_id, "--quiet", "--no-report", "--set", "epochs=8",
                             "--set", "checkpoint_interval=1",
                             "--set", "models.digits_mlp.hyperparameters.batch_size=4", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    run_dir = runs / run_id
    try:
        deadline = time.monotonic() + 300
        want = f"epoch_{epochs_checkpointed:06d}.pt"
        while time.monotonic() < deadline and not all(
                (run_dir / "checkpoints" / m / want).exists() for m in ("digits_mlp@digits", "digits_cnn@digits")):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in out, err[-3000:]
    return run_dir


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_resume_refuses_a_model_without_a_loadable_checkpoint_and_reports_every_fallback(tmp_path):
    import hashlib

    runs = tmp_path / "runs"
    run_dir = _stopped_run(tmp_path, runs, "r", 3)
    mlp, cnn = (DiskSaver(run_dir / "checkpoints").list(m) for m in ("digits_mlp@digits", "digits_cnn@digits"))
    newest_mlp = int(mlp[-1].stem.split("_")[1])
    mlp[-1].write_bytes(mlp[-1].read_bytes()[:100])  # truncated newest: falls back to the one before
    cnn[-1].write_bytes(b"not a torch file")  # its checksum matches, yet it cannot be loaded
    cnn[-1].with_suffix(".sha256").write_text(hashlib.sha256(b"not a torch file").hexdigest())
    record = cnn[-1].with_suffix(".json")  # the driver's part, tied to the file by the same digest
    digest = hashlib.sha256(b"not a torch file").hexdigest()
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": digest}))
    for path in cnn[:-1]:
        path.write_bytes(path.read_bytes()[:50])
    before = _digest(run_dir)

    refused = _cli(tmp_path, "resume", "r", "--runs-dir", str(runs))
    assert refused.returncode == 2
    _no_traceback(refused)
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("workbench: error: cannot resume consistently: digits_cnn@digits has no loadable checkpoint")
    assert "cannot be loaded" in line and "checksum mismatch" in line
    assert "--allow-restart digits_cnn@digits" in line
    assert _digest(run_dir) == before  # nothing touched, no cluster started

    unknown = _cli(tmp_path, "resume", "r", "--runs-dir", str(runs), "--allow-restart", "nope")
    assert unknown.returncode == 2 and "--allow-restart nope: no such model" in unknown.stderr

    resumed = _cli(tmp_path, "resume", "r", "--runs-dir", str(runs), "--allow-restart", "digits_cnn@digits")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _no_traceback(resumed)
    warnings = [x for x in resumed.stderr.splitlines() if x.startswith("workbench: warning:")]
    assert f"workbench: warning: digits_mlp@digits resumes from epoch {newest_mlp - 1}; passed over: " \
           f"epoch {newest_mlp} (checksum mismatch)" in warnings
    assert any(w.startswith("workbench: warning: digits_cnn@digits restarts from epoch 0 (--allow-restart)")
               for w in warnings)
    store = read_store(run_dir / "store.sqlite")
    fallbacks = {row.model: row.payload for row in store.events(kind="checkpoint_fallback").itertuples()}
    assert fallbacks["digits_mlp@digits"]["epoch"] == newest_mlp - 1
    assert fallbacks["digits_cnn@digits"] == {**fallbacks["digits_cnn@digits"], "epoch": 0, "restart": True}
    started = store.events(kind="resumed")["payload"].iloc[-1]["from_epoch"]
    assert started == {"digits_mlp@digits": newest_mlp - 1, "digits_cnn@digits": 0}
    assert set(store.models()["state"]) == {"finished"}


def _file_size_limit(limit: int):
    """For the child: files may grow to ``limit`` bytes; past it a write fails with EFBIG
    (SIGXFSZ ignored), as on a full disk; the Dask workers it starts inherit the limit."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("where, limit, extra", [
    ("store.sqlite", 300 * 1024, ["--set", "epochs=6"]),
    ("checkpoint digits_", 250 * 1024, ["--set", "epochs=3", "--set", "checkpoint_interval=1",
                                        "--set", "checkpoint_seconds=0"]),
], ids=["store", "checkpoint"])
def test_a_full_disk_fails_the_run_with_the_reason_and_keeps_what_was_written_valid(tmp_path, where, limit, extra):
    runs = tmp_path / "runs"
    earlier = runs / "earlier"  # something already there, which must come out untouched
    earlier.mkdir(parents=True)
    (earlier / "notes.txt").write_text("keep me")
    proc = _cli(tmp_path, "run", "--preset", "digits_mutual", "--runs-dir", str(runs), "--run-id", "full", *extra,
                preexec_fn=_file_size_limit(limit))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    assert "full finished" not in proc.stdout and "run full failed" in proc.stdout
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("workbench: run failed:")]
    # Which write meets the limit first depends on timing (the store's log grows with every
    # step): either one must fail the run with the reason.
    assert re.fullmatch(r"workbench: run failed: writing (\S+/store\.sqlite|checkpoint \S+ epoch \d+) failed: "
                        r".*file size limit.*", line), line
    run_dir = runs / "full"
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or
                 (p.suffix == ".sha256" and not p.with_suffix(".pt").exists())]
    assert leftovers == []
    for model in ("digits_mlp@digits", "digits_cnn@digits"):
        _valid_checkpoints(run_dir, model)  # whatever was written loads
    store = read_store(run_dir / "store.sqlite")  # readable, not corrupt
    assert len(store.models()) == 2 and not store.events().empty
    # Where the store still had room it says failed, else (its last writes refused) the run
    # shows as interrupted, resumable once there is space: never as finished.
    assert store.run_info()["state"] in ("failed", "running")
    status = _cli(tmp_path, "status", "--runs-dir", str(runs))
    assert status.returncode == 0, status.stderr
    assert any(row.split()[:2] in (["full", "failed"], ["full", "interrupted"]) for row in status.stdout.splitlines())
    assert (earlier / "notes.txt").read_text() == "keep me"


def test_an_epoch_count_that_would_never_end_is_refused_before_anything_starts(tmp_path):
    runs = tmp_path / "runs"
    proc = _cli(tmp_path, "run", "--preset", "digits_mutual", "--runs-dir", str(runs),
                "--set", "epochs=100000000000000000000", timeout=120)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("workbench: error: ")
    assert line.endswith("presets.digits_mutual.epochs: must be at most 100,000, got 100,000,000,000,000,000,000")
    assert not runs.exists() or not any(runs.iterdir())


def _certificate(folder: Path) -> Path:
    """A self-signed certificate (its own CA) for every role, as ca.pem, cert.pem, key.pem."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workbench-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "ca.pem").write_bytes(pem)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder


def _tls_without_certificate(address: str, ca: Path) -> str:
    """Open TLS to ``address`` trusting its CA but showing no certificate of our own, and
    send a byte: a scheduler that checks clients closes the connection."""
    import socket
    import ssl

    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(b"\0" * 8)
            return "refused" if conn.recv(1) == b"" else "accepted"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def test_a_bad_security_path_is_one_line(tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ca.pem").write_text("x")
    (tmp_path / "tls.yaml").write_text("ca: ca.pem\ncert: cert.pem\n")
    for path, words in ((tmp_path / "nowhere", "no such file or folder"), (tmp_path / "half", "missing"),
                        (tmp_path / "tls.yaml", "expected exactly the keys ca, cert and key")):
        proc = _cli(tmp_path, "run", "--preset", "digits_mutual", "--runs-dir", str(runs), "--security", str(path),
                    timeout=120)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"workbench: error: --security {path}: {words}")
        assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.slow
def test_with_security_the_local_scheduler_refuses_a_client_without_the_certificate(tmp_path):
    from distributed import Client

    from workbench._security import load_security

    certs = _certificate(tmp_path / "certs")
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--preset", "digits_mutual", "--runs-dir",
                             str(runs), "--run-id", "tls", "--security", str(certs), "--quiet", "--no-report",
                             "--set", "epochs=50", "--set", "models.digits_mlp.hyperparameters.batch_size=4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        environment = runs / "tls" / "environment.json"
        deadline = time.monotonic() + 240
        while not environment.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert environment.exists(), proc.stderr.read() if proc.poll() is not None else "no environment.json"
        address = json.loads(environment.read_text())["scheduler"]
        assert address.startswith("tls://127.0.0.1:")

        other = _certificate(tmp_path / "other")  # a certificate the run's CA never signed
        for where, security in ((address.replace("tls://", "tcp://"), None),  # no TLS at all
                                (address, load_security(other))):
            with pytest.raises((OSError, TimeoutError)):
                Client(where, security=security, timeout=5)
        assert _tls_without_certificate(address, certs / "ca.pem") == "refused"
        with Client(address, security=load_security(certs), timeout=30) as client:  # the certificate: let in
            assert len(client.scheduler_info(n_workers=-1)["workers"]) >= 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in out + err
