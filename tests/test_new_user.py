"""What a new user still tripped on (issue 29), each through the CLI as they met it: pipes that
close early, init --data that agrees with train, unreadable files in export --check, paths in a
config, what init says it wrote, flip chosen from the data, time estimates, an honest validation
figure, and hints that point the right way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .imagegen import make_folder

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cnncli"]
TINY = {"input": [12, 12, 3], "layers": [
    {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}}, {"maxpool": {"size": 2}},
    "flatten", {"dense": {"units": 3, "activation": "softmax"}}]}


def run(*args, cwd=None, env=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)


def _bash(line, tmp_path):
    """A shell pipeline -> (cnncli's exit status as PIPESTATUS reports it, stderr)."""
    status = tmp_path / "status.txt"
    proc = subprocess.run(["bash", "-c", f'{line}; echo "${{PIPESTATUS[0]}}" > {status}'], capture_output=True,
                          text=True, env=dict(os.environ, CNNCLI_CACHE=str(tmp_path / "cache")),
                          stdin=subprocess.DEVNULL)
    return int(status.read_text()), proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny network trained one epoch on three classes of 12x12 images -> its folder."""
    tmp = tmp_path_factory.mktemp("newuser")
    make_folder(tmp / "data", per_class=12)
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY, "data": {"train": "data", "val_split": 0.25},
                                   "train": {"epochs": 1, "batch_size": 4}, "output": "run"}))
    done = run("train", cfg, "-q", cwd=tmp, env={"CNNCLI_CACHE": str(tmp / "cache")})
    assert done.returncode == 0, done.stderr
    return tmp


# --- 1. pipes ------------------------------------------------------------------------------

@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_every_printing_command_into_a_closed_pipe_exits_0(trained, reader):
    cli = f"{sys.executable} -m cnncli"
    lines = [f"{cli} evaluate {trained / 'run' / 'best.npz'} {trained / 'data'}",
             f"{cli} inspect {ROOT / 'configs' / 'models' / 'explainer.yaml'}",
             f"{cli} inspect {trained / 'run' / 'best.npz'} --json"]
    for line in lines:
        for _ in range(2 if "evaluate" in line else 3):   # timing-dependent: try more than once
            status, err = _bash(f"{line} | {reader}", trained)
            assert (status, err) == (0, ""), line


# --- 4. export --check-images skips unreadable files as predict does -----------------------

def test_export_check_images_skips_and_lists_unreadable_files(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    good = sorted((trained / "data" / "a").glob("*.png"))[:2]
    for p in good:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "empty.png").write_bytes(b"")
    (images / "cut.png").write_bytes(good[0].read_bytes()[:60])
    res = run("export", trained / "run" / "best.npz", tmp_path / "m.onnx", "--check-images", images)
    assert res.returncode == 0, res.stderr
    assert "8 random inputs and 2 images: largest difference" in res.stdout
    assert res.stderr.splitlines() == [f"skipped {images / 'cut.png'}: cannot decode: image file is truncated",
                                       f"skipped {images / 'empty.png'}: empty file (0 bytes)"]


# --- 11. the onnx extra brings what export --check runs ------------------------------------

def test_onnx_extra_brings_onnx_runtime_and_the_message_names_it(trained, tmp_path):
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["onnx"]
    assert any(req.startswith("onnxruntime") for req in extra)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnxruntime.py").write_text("raise ImportError('hidden by the test')\n")
    res = run("export", trained / "run" / "best.npz", tmp_path / "m.onnx", "--check",
              env={"PYTHONPATH": str(hide)})
    assert res.returncode == 2 and not (tmp_path / "m.onnx").exists()
    assert res.stderr == ("error: --check runs the model in ONNX Runtime, which is not installed: "
                          "pip install 'cnncli[onnx]' brings it (or pip install onnxruntime)\n")
