"""Data-parallel training on real MPI processes of this machine (mpiexec from `cnncli[mpi]`):
the same weights as one process, Ctrl-C and resume, a killed, a crashed and a frozen process, and
processes that disagree at the start. Tiny data, so that all of it costs CI about a minute."""

import os
import re
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnncli.model import checkpoint
from cnncli.engine.progress import QuietReporter
from cnncli.commands.train import train

from .conftest import sitecustomize, without_launcher
from .imagegen import make_folder
from .test_train import assert_same_weights, weights
from .test_multilabel import ml_data, write_config  # noqa: F401  (the fixture, for the multi-label case)

MPIEXEC = Path(sys.executable).parent / "mpiexec"
pytestmark = pytest.mark.skipif(find_spec("mpi4py") is None or not MPIEXEC.exists(),
                                reason="needs MPI: pip install 'cnncli[mpi]'")

PLAIN = {"input": [12, 12, 3], "layers": [
    {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}}, {"maxpool": {"size": 2}},
    "flatten", {"dense": {"units": 3, "activation": "softmax"}}]}
NORMED = {"input": [12, 12, 3], "layers": [
    {"conv": {"filters": 4, "size": 3, "padding": "same", "bias": False}}, "batchnorm", "relu",
    {"maxpool": {"size": 2}}, "flatten", {"dense": {"units": 8, "bias": False}}, "batchnorm", "relu",
    {"dense": {"units": 3, "activation": "softmax"}}]}
TOLERANCE = 1e-5   # relative, weights after one epoch: float sums in another order, nothing else


def _env(tmp_path, **extra):
    return without_launcher(CNNCLI_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1", **extra)


def _config(tmp_path, name="run", model=PLAIN, per_class=50, **train_kw):
    """~150 images: batches of 64, 64 and the rest, an uneven last one."""
    data = tmp_path / "data"
    if not data.exists():
        make_folder(data, per_class=per_class)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "model": model,
        "data": {"train": str(data), "val_split": 0.1, "augment": {"flip": True, "crop_padding": 1}},
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 2, "class_weights": "auto", **train_kw},
        "output": str(tmp_path / name)}))
    return path


def _mpi(n, *args, env, flags=(), timeout=180):
    return subprocess.run([str(MPIEXEC), *flags, "-n", str(n), sys.executable, "-m", "cnncli", "train", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "cnncli", "train", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _relative_difference(a, b):
    worst = 0.0
    for k in a:
        if k.startswith("layers."):
            x, y = a[k].astype(np.float64), b[k].astype(np.float64)
            worst = max(worst, np.abs(x - y).max() / max(np.abs(x).max(), 1e-12))
    return worst


@pytest.mark.parametrize("model,n", [(PLAIN, 2), (NORMED, 2), (NORMED, 3)], ids=["plain-2", "batchnorm-2", "batchnorm-3"])
def test_processes_train_as_one(tmp_path, model, n):
    """Global batch 64 on n processes against one process with batch 64, same seed, one epoch.
    Batchnorm is synchronised, so the same rule holds; 3 processes over 133 training images
    split the last batch of 5 unevenly, and class weights and augmentation are on."""
    cfg = _config(tmp_path, model=model, per_class=49 if n == 3 else 50)
    one = train(cfg, overrides=[f"output={tmp_path / 'one'}"], reporter=QuietReporter())
    res = _mpi(n, cfg, "--set", f"output={tmp_path / 'many'}", env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("epoch 1/1") == 1 and "data:" in res.stdout   # rank 0 alone prints
    difference = _relative_difference(weights(one.output), weights(tmp_path / "many"))
    print(f"{n} processes against one: largest relative difference {difference:.2e}")
    assert difference < TOLERANCE
    rows = [(tmp_path / d / "metrics.csv").read_text().splitlines()[1].split(",") for d in ("one", "many")]
    assert float(rows[0][1]) == pytest.approx(float(rows[1][1]), rel=1e-4) and rows[0][2] == rows[1][2]  # the job's loss, accuracy


def test_ctrl_c_stops_every_process_at_one_batch_and_resumes_exactly(tmp_path):
    env = _env(tmp_path)
    dropped = {**PLAIN, "layers": PLAIN["layers"][:2] + [{"dropout": {"rate": 0.3}}] + PLAIN["layers"][2:]}
    cfg = _config(tmp_path, "cut", model=dropped, epochs=200, batch_size=16)   # dropout: a generator per process
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "cnncli", "train", str(cfg)], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(signal.SIGINT)          # Hydra hands the Ctrl-C to every process
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = re.findall(r"interrupted (?:in epoch \d+ after batch \d+|after epoch \d+)", err)  # mid-epoch, or in validation
    assert len(said) == 1 and "Traceback" not in err and "on 2 processes" in err, err
    state = checkpoint.load(tmp_path / "cut" / "last.npz")[1]["state"]
    assert state["processes"] == 2 and state["epoch"] >= 1
    assert state["batch"] == 0 or len(state["dropout_rng"]) == 2   # mid-epoch: each process's generator
    epochs = state["epoch"] + 1
    again = _mpi(2, "--resume", tmp_path / "cut", "--set", f"train.epochs={epochs}", env=env)
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stdout           # the same number of processes: exact
    whole = _mpi(2, cfg, "--set", f"train.epochs={epochs}", "--set", f"output={tmp_path / 'whole'}", env=env)
    assert whole.returncode == 0, whole.stderr
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "cut"))
    # on another number of processes it goes on from the same place, with a note
    notes = Recorder()
    moved = train(resume=tmp_path / "cut", overrides=[f"train.epochs={epochs + 1}"], reporter=notes)
    assert moved.state.epoch == epochs + 1 and moved.state.processes == 1
    assert any("trained on 2 process(es) and continues on 1" in text for text in notes.messages)
    assert all("trained on 2 process(es) and continues on 1" in text     # and no other note
               for text in notes.messages if text.startswith("note:"))


class Recorder(QuietReporter):
    def __init__(self):
        super().__init__()
        self.messages = []

    def message(self, text):
        self.messages.append(text)


def _pid_of_rank(rank, marker, deadline=60):
    """The pid of the cnncli process of this rank whose command line holds marker."""
    end = time.time() + deadline
    while time.time() < end:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if f"PMI_RANK={rank}".encode() in env and marker.encode() in cmd and b"cnncli" in cmd:
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no process of rank {rank}")


def _wait_for_epoch(run_dir, epochs=1, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if checkpoint.load(run_dir / "last.npz")[1]["state"]["epoch"] >= epochs:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("no epoch finished")


def test_a_killed_process_ends_the_job_with_one_clear_line_then_resume(tmp_path):
    """Hydra kills every process of a machine where one died by a signal, rank 0 often before it
    can speak: then `--processes`' launcher says where the run stands. One line either way."""
    env = _env(tmp_path)
    cfg = _config(tmp_path, "killed", epochs=400, batch_size=16)
    proc = _start([cfg, "--processes", "2"], env)
    _wait_for_epoch(tmp_path / "killed", 2)
    os.kill(_pid_of_rank(1, str(cfg)), signal.SIGKILL)
    start = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - start < 30 and proc.returncode != 0
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and "last.npz (after epoch" in said[0] and "--resume" in said[0], err
    meta = checkpoint.load(tmp_path / "killed" / "last.npz")[1]      # intact
    done = _start(["--resume", tmp_path / "killed", "--processes", "2", "--set",
                   f"train.epochs={meta['state']['epoch'] + 1}"], env)
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err


def test_a_crashed_process_is_named_and_ends_the_job(tmp_path):
    fault = sitecustomize(
        tmp_path / "fault",
        "import os\nif os.environ.get('PMI_RANK') == '1':\n"
        "    from cnncli import model\n    real, calls = model.Model.train_step, [0]\n"
        "    def broken(self, *a, **k):\n        calls[0] += 1\n"
        "        if calls[0] == 12:\n            raise RuntimeError('injected fault')\n"
        "        return real(self, *a, **k)\n    model.Model.train_step = broken\n")
    cfg = _config(tmp_path, "crash", epochs=50, batch_size=16)
    start = time.time()
    res = _mpi(2, cfg, env=_env(tmp_path, PYTHONPATH=str(fault)), flags=["-disable-auto-cleanup"], timeout=60)
    assert time.time() - start < 30 and res.returncode != 0
    assert "process 1 of 2 (on " in res.stderr and "injected fault" in res.stderr
    assert "error: another process of this job ended" in res.stderr, res.stderr
    checkpoint.load(tmp_path / "crash" / "last.npz")


def test_a_frozen_process_times_out(tmp_path):
    """Launchers that neither kill nor signal (srun without --kill-on-bad-exit): the step's wait is
    watched."""
    cfg = _config(tmp_path, "frozen", epochs=400, batch_size=16)
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "cnncli", "train", str(cfg)],
                            env=_env(tmp_path, CNNCLI_PEER_TIMEOUT="3"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_epoch(tmp_path / "frozen", 2)
    victim = _pid_of_rank(1, str(cfg))
    os.kill(victim, signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.kill(victim, signal.SIGKILL)   # mpiexec ended it already, normally
        except ProcessLookupError:
            pass
    assert proc.returncode != 0
    assert "error: the other processes did not answer for 3s" in err and "--resume" in err, err


def test_processes_that_disagree_at_the_start_stop_together(tmp_path):
    env = _env(tmp_path)
    cfg = _config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.yaml").write_text(cfg.read_text().replace(str(tmp_path / "data"), "data"))
    old = sitecustomize(tmp_path / "old", "import cnncli\ncnncli.__version__ = '0.0.1'\n")
    mpmd = [str(MPIEXEC), "-n", "1", sys.executable, "-m", "cnncli", "train", str(cfg), ":"]
    cases = {
        "cannot read": ["-wdir", str(elsewhere), "-n", "1", sys.executable, "-m", "cnncli", "train", "run.yaml"],
        "config": ["-n", "1", sys.executable, "-m", "cnncli", "train", str(cfg), "--set", "train.lr=0.5"],
        "version": ["-n", "1", "env", f"PYTHONPATH={old}", sys.executable, "-m", "cnncli", "train", str(cfg)],
    }
    expected = {"cannot read": r"process 1 of 2 \(on .*\): data folder .*data does not exist",
                "config": "process 1 of 2 .* has config.train.lr = 0.5 where process 0 .* has 0.01: give every process",
                "version": "process 1 of 2 .* has cnncli = '0.0.1.*' where .*: install the same cnncli"}
    for case, rest in cases.items():
        res = subprocess.run(mpmd + rest, capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 2, (case, res.stderr)
        assert res.stderr.count("\n") == 1 and re.search(expected[case], res.stderr), (case, res.stderr)
        assert not (tmp_path / "run").exists()       # nothing written, not even half


def test_divergence_is_agreed_by_every_process(tmp_path):
    """lr x 1e30 from epoch 2 on: the summed loss is NaN on every process at the same batch."""
    cfg = _config(tmp_path, epochs=3, optimizer="sgd", schedule="step", step_size=1, gamma=1e30)
    res = _mpi(2, cfg, env=_env(tmp_path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert re.search(r"training diverged: loss is (nan|inf) at epoch 2, batch \d+: .*last.npz \(after epoch 1\) "
                     "is intact", res.stderr), res.stderr


def test_a_full_disk_on_rank_0_stops_every_process(tmp_path):
    full = sitecustomize(
        tmp_path / "full",
        "import errno, os\nif os.environ.get('PMI_RANK') == '0':\n    import numpy as np\n"
        "    def savez(f, **arrays):\n        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    np.savez = savez\n")
    cfg = _config(tmp_path, epochs=2)
    res = _mpi(2, cfg, env=_env(tmp_path, PYTHONPATH=str(full)), timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "cannot write checkpoint" in res.stderr and "No space left on device" in res.stderr



def test_multilabel_data_over_mpi_is_one_line(ml_data):
    res = _mpi(2, write_config(ml_data), env=_env(ml_data))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "multi-label training runs in one process: drop --processes / mpiexec" in res.stderr, res.stderr
    assert not (ml_data / "run").exists()
