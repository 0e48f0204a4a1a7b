"""A good Unix citizen: pipes that close early, runs started together into one folder, shared
caches under load, a killed run resumed at once. Each test drives the real CLI in processes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from .imagegen import make_folder

CLI = [sys.executable, "-m", "cnncli"]
MODEL = {"input": [12, 12, 3], "layers": [
    {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}}, {"maxpool": {"size": 2}},
    "flatten", {"dense": {"units": 3, "activation": "softmax"}}]}


def _env(tmp_path):
    return dict(os.environ, CNNCLI_CACHE=str(tmp_path / "cache"))


def _config(tmp_path, name="run", output=None, epochs=2, per_class=12):
    data = tmp_path / "data"
    if not data.exists():
        make_folder(data, per_class=per_class)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"model": MODEL, "data": {"train": str(data), "val_split": 0.25},
                                    "train": {"epochs": epochs, "batch_size": 4, "seed": 1},
                                    "output": str(output or tmp_path / name)}))
    return path


def _bash(line, tmp_path):
    """Run a shell pipeline; -> (cnncli's exit status as PIPESTATUS reports it, stdout, stderr)."""
    status_file = tmp_path / "status.txt"
    proc = subprocess.run(["bash", "-c", f'{line}; echo "${{PIPESTATUS[0]}}" > {status_file}'],
                          capture_output=True, text=True, env=_env(tmp_path), stdin=subprocess.DEVNULL)
    return int(status_file.read_text()), proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unix")
    cfg = _config(tmp, epochs=1)
    subprocess.run(CLI + ["train", str(cfg), "-q"], check=True, env=_env(tmp))
    return tmp


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"]], ids=["table", "json", "csv"])
def test_predict_into_a_pipe_that_closes_stops_quietly(trained, fmt):
    image = sorted((trained / "data" / "a").glob("*.png"))[0]
    many = " ".join([os.path.relpath(image, trained)] * 3000)   # far more output than a pipe buffers
    line = f"cd {trained} && {sys.executable} -m cnncli predict run/best.npz {many} {' '.join(fmt)} | head -1"
    status, out, err = _bash(line, trained)
    assert status == 0, err
    assert err == "" and out.count("\n") == 1


def test_train_into_a_pipe_that_closes_saves_and_resumes(tmp_path):
    cfg = _config(tmp_path, epochs=3)
    status, out, err = _bash(f"{sys.executable} -m cnncli train {cfg} | head -1", tmp_path)
    assert status == 141 and err == "", err          # as a process ended by SIGPIPE, nothing on stderr
    assert out.startswith("data:")
    assert (tmp_path / "run" / "last.npz").exists()
    done = subprocess.run(CLI + ["train", "--resume", str(tmp_path / "run"), "-q"], capture_output=True,
                          text=True, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr


def test_four_trains_into_one_folder_one_runs_three_are_refused(tmp_path):
    # long enough that the three others reach the folder while the first trains, even on a busy
    # machine (with 6 short epochs one of them arrived after the run had ended, 3 times in 10)
    cfg = _config(tmp_path, epochs=30, per_class=30)
    procs = [subprocess.Popen(CLI + ["train", str(cfg), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(tmp_path)) for _ in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2, 2, 2], results
    for code, err in results:
        if code == 2:
            assert err.count("\n") == 1 and "is in use by another cnncli train (pid " in err, err
    from cnncli.model.checkpoint import load_model
    model, meta, _ = load_model(tmp_path / "run" / "best.npz")
    assert meta["epoch"] >= 1
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 31                             # one complete run of 30 epochs


def test_kill_9_then_resume_at_once(tmp_path):
    cfg = _config(tmp_path, epochs=40, per_class=30)
    proc = subprocess.Popen(CLI + ["train", str(cfg), "-q"], env=_env(tmp_path))
    last = tmp_path / "run" / "last.npz"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(CLI + ["train", "--resume", str(tmp_path / "run"), "-q", "--set", "train.epochs=2"],
                         capture_output=True, text=True, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr           # the lock died with the process


def test_four_runs_share_one_data_folder_and_cache(tmp_path):
    make_folder(tmp_path / "data", per_class=40, size=12)
    cfgs = [_config(tmp_path, f"r{i}", epochs=1) for i in range(4)]
    procs = [subprocess.Popen(CLI + ["train", str(c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(tmp_path)) for c in cfgs]
    outs = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in outs] == [0, 0, 0, 0], outs
    decoded = [out for _, out, _ in outs if "; decoded in" in out]
    cached = [out for _, out, _ in outs if "read from the decode cache" in out]
    assert len(decoded) == 1 and len(cached) == 3      # the images were decoded once
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.suffix in (".npy", ".json"))
    assert len(entries) == 2 and not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]
    weights = [np.load(tmp_path / f"r{i}" / "last.npz")["layers.0.weight"] for i in range(4)]
    for w in weights[1:]:
        np.testing.assert_array_equal(w, weights[0])   # same data, same seed: the same run


def test_config_and_resume_together_are_refused(trained):
    res = subprocess.run(CLI + ["train", str(trained / "run.yaml"), "--resume", str(trained / "run")],
                         capture_output=True, text=True, env=_env(trained))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "give either a config" in res.stderr and "--set train.epochs=N" in res.stderr


def test_a_failed_start_leaves_no_folder(tmp_path):
    cfg = _config(tmp_path)
    res = subprocess.run(CLI + ["train", str(cfg), "--set", "model.layers.3.dense.units=5"], capture_output=True,
                         text=True, env=_env(tmp_path))
    assert res.returncode == 2 and not (tmp_path / "run").exists()


def test_predict_errors_are_printed_once_and_paths_normalised(trained):
    image = sorted((trained / "data" / "a").glob("*.png"))[0]
    detour = f"{trained}/data/../data/a/{image.name}"
    missing = f"{trained}/nope.png"
    table = subprocess.run(CLI + ["predict", str(trained / "run" / "best.npz"), detour, missing],
                           capture_output=True, text=True, env=_env(trained))
    assert table.returncode == 1
    assert "nope.png" not in table.stdout and table.stderr.count("nope.png") == 1
    assert "/../" not in table.stdout and f"{trained}/data/a/{image.name}" in table.stdout
    js = subprocess.run(CLI + ["predict", str(trained / "run" / "best.npz"), detour, missing, "--json"],
                        capture_output=True, text=True, env=_env(trained))
    records = [json.loads(line) for line in js.stdout.splitlines()]
    assert [("error" in r) for r in records] == [True, False]
    assert js.stderr.count("\n") == 1 and "1 of 2 image(s) could not be read" in js.stderr
