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


# --- 2. init --data refuses what train refuses, and says what it leaves out ----------------

def test_init_refuses_an_empty_class_as_train_does(tmp_path):
    make_folder(tmp_path / "pets", classes=("cat", "dog", "hubble"), per_class=4)
    for p in (tmp_path / "pets" / "dog").iterdir():
        p.unlink()
    (tmp_path / "pets" / "dog" / ".keep").write_text("")
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "pets")
    assert res.returncode == 2 and not (tmp_path / "cfg").exists()
    assert res.stderr == (f"error: class folder {tmp_path / 'pets' / 'dog'} has no images (.bmp, .gif, .jpeg, "
                          ".jpg, .png, .tif, .tiff, .webp): add images or remove the folder\n")


def test_init_leaves_out_empty_and_truncated_files_and_says_so(tmp_path):
    pets = make_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=5)
    (pets / "cat" / "img1.png").write_bytes(b"")
    (pets / "cat" / "img2.png").write_bytes((pets / "dog" / "img0.png").read_bytes()[:60])
    res = run("init", tmp_path / "cfg", "--data", pets)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(
        f"data: 2 classes (cat, dog), 8 images in {pets}, leaving out 1 empty file(s) (0 bytes, e.g. "
        f"{pets / 'cat' / 'img1.png'}) and 1 unreadable (e.g. {pets / 'cat' / 'img2.png'}: cannot decode: "
        "image file is truncated), as training will (it lists them in skipped.txt)")


# --- 3. a parent of data sets is not a folder of classes -----------------------------------

def test_init_refuses_a_parent_of_data_sets(tmp_path):
    make_folder(tmp_path / "datasets" / "photos" / "train", per_class=3)
    make_folder(tmp_path / "datasets" / "photos_test" / "2024", per_class=3)
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "datasets")
    assert res.returncode == 2 and not (tmp_path / "cfg").exists()
    assert res.stderr == (f"error: {tmp_path / 'datasets'} looks like a folder of data sets, not of classes: its "
                          "sub-folders (photos, photos_test) hold no image themselves, only folders of them, and "
                          "photos_test is named like a split: point --data at one data set, e.g. --data "
                          f"{tmp_path / 'datasets' / 'photos'}\n")


# --- 5. paths in a config are relative to the config file ----------------------------------

def _tiny_config(path, train, output="runs/p", **data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": TINY, "data": {"train": train, "val_split": 0.25, **data},
                                    "train": {"epochs": 1, "batch_size": 4}, "output": output}))
    return path


def test_config_paths_are_relative_to_the_config_file_from_any_folder(tmp_path):
    make_folder(tmp_path / "proj" / "photos", per_class=8)
    cfg = _tiny_config(tmp_path / "proj" / "train.yaml", "photos")
    (tmp_path / "elsewhere").mkdir()
    env = {"CNNCLI_CACHE": str(tmp_path / "cache")}
    res = run("train", cfg, cwd=tmp_path / "elsewhere", env=env)
    assert res.returncode == 0, res.stderr
    assert f"checkpoints in {tmp_path / 'proj' / 'runs' / 'p'}/best.npz" in res.stdout
    assert (tmp_path / "proj" / "runs" / "p" / "best.npz").exists()
    again = run("train", "--resume", tmp_path / "proj" / "runs" / "p", "--set", "train.epochs=2", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    # a config written under the old rule (data relative to the current folder) still trains, and says so
    _tiny_config(tmp_path / "cfgs" / "old.yaml", "proj/photos", output=str(tmp_path / "old-run"))
    res = run("train", "cfgs/old.yaml", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"warning: data.train 'proj/photos': no {tmp_path / 'cfgs' / 'proj' / 'photos'} next to the config; using "
        f"{tmp_path / 'proj' / 'photos'}, relative to the current folder as cnncli did before. Paths in a config "
        "are relative to its folder: write '../proj/photos'")
    missing = run("train", _tiny_config(tmp_path / "c" / "t.yaml", "nowhere"), cwd=tmp_path, env=env)
    assert missing.stderr == (f"error: data folder {tmp_path / 'c' / 'nowhere'} does not exist: check data.train "
                              "in the config (a path there is relative to the config file's folder)\n")


def test_init_writes_paths_relative_to_its_config_and_train_finds_them(tmp_path):
    make_folder(tmp_path / "data" / "photos", per_class=8, size=16)
    res = run("init", "cfg", "--data", "data/photos", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "cfg" / "train.yaml").read_text())
    assert (cfg["data"]["train"], cfg["output"]) == ("../data/photos", "../runs/photos")
    (tmp_path / "other").mkdir()
    trained = run("train", "../cfg/train.yaml", "-q", "--set", "train.epochs=1", cwd=tmp_path / "other",
                  env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "runs" / "photos" / "best.npz").exists()


# --- 6. init says what it wrote ------------------------------------------------------------

def test_init_describes_every_conv_it_writes(tmp_path):
    make_folder(tmp_path / "photos", per_class=4, size=64)
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "photos")
    assert res.returncode == 0, res.stderr
    model = yaml.safe_load((tmp_path / "cfg" / "model.yaml").read_text())
    filters = [layer["conv"]["filters"] for layer in model["layers"] if isinstance(layer, dict) and "conv" in layer]
    assert filters == [32, 64, 128, 256, 256]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("model:"))
    assert line == ("model: 5 conv-batchnorm-relu layers (32, 64, 128, 256, 256 filters), a 2x2 max-pool after each "
                    "of the first 4, global average pooling, dropout 0.2 and a softmax: 980,003 parameters, 589,824 "
                    "of them in the last conv")


# --- 7. flip from the data -----------------------------------------------------------------

def _digits(root):
    """Digit-like scans: dark strokes on light grey, one channel."""
    from PIL import Image, ImageDraw

    for k, name in enumerate(("1", "7")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            img = Image.new("L", (16, 16), 230 - i)
            ImageDraw.Draw(img).line([(8, 2), (8 - 4 * k, 14)], fill=20, width=2)
            img.save(root / name / f"{i}.png")
    return root


def _photo_like(root):
    """Colour pictures with texture: a gradient sky, a coloured blob, noise (RGB JPEGs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            a = np.zeros((40, 48, 3), np.float32)
            a[..., 2] = np.linspace(120, 230, 40)[:, None]
            a[..., 1] = 90 + 40 * k
            a[10:30, 12 + 4 * i:30 + 4 * i, 0] = 200
            a += rng.normal(0, 12, a.shape)
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").save(root / name / f"{i}.jpg")
    return root


@pytest.mark.parametrize("kind", ["digits", "digits_in_rgb", "photos", "shapes"])
def test_init_chooses_flip_from_the_data_and_says_why(tmp_path, kind):
    if kind == "shapes":
        from cnncli.data.synthetic import write_shapes
        write_shapes(tmp_path / "data", per_class=4, size=32, n_classes=3, seed=0, val_per_class=0)
        data = tmp_path / "data" / "train"
    elif kind == "photos":
        data = _photo_like(tmp_path / "data")
    else:
        data = _digits(tmp_path / "data")
        if kind == "digits_in_rgb":
            from PIL import Image
            for p in data.rglob("*.png"):
                Image.open(p).convert("RGB").save(p)
    res = run("init", tmp_path / "cfg", "--data", data)
    assert res.returncode == 0, res.stderr
    flip = yaml.safe_load((tmp_path / "cfg" / "train.yaml").read_text())["data"]["augment"]["flip"]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("train:"))
    assert flip is (kind in ("photos", "shapes"))
    assert {"digits": "flip off: the images are grayscale, as scans of digits and text are",
            "digits_in_rgb": "flip off: only 0 of the 12 images looked at have colour to speak of",
            "photos": "flip on: 12 of the 12 images looked at are in colour, as photos are",
            "shapes": "flip on: 12 of the 12 images looked at are in colour"}[kind] in line


# --- 8. time estimates ---------------------------------------------------------------------

def test_init_estimates_the_training_time_from_a_timed_step(tmp_path):
    import re

    make_folder(tmp_path / "photos", per_class=10, size=16)
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "photos")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("time:"))
    assert re.fullmatch(r"time: about (\d+m\d\ds|\d+s) of training on this machine \(\d+ ms a step at batch 32, "
                        r"timed just now\); decoding the images once is extra, and .*kernels.*", line), line


def test_train_shows_the_time_left_from_the_first_epoch(tmp_path):
    import re

    make_folder(tmp_path / "photos", per_class=8)
    cfg = _tiny_config(tmp_path / "t.yaml", "photos", output="run")
    res = run("train", cfg, "--set", "train.epochs=3", env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    epochs = [ln for ln in res.stdout.splitlines() if ln.startswith("epoch ")]
    assert [bool(re.search(r"  ~(\d+m\d\ds|\d+s) left$", ln)) for ln in epochs] == [True, True, False]


def test_time_left_is_the_pace_so_far():
    from cnncli.engine.estimate import duration, time_left

    assert time_left(30.0, 3, 7) == 70.0
    assert [duration(s) for s in (41, 185, 4500)] == ["41s", "3m05s", "1h15m"]


# --- 9. a validation split from the training folder is not the honest figure ---------------

def test_train_and_report_say_a_held_out_split_flatters_and_use_the_test_folder(tmp_path):
    make_folder(tmp_path / "dg" / "train", per_class=8)
    make_folder(tmp_path / "dg" / "test", per_class=3, seed=3)
    cfg = _tiny_config(tmp_path / "t.yaml", "dg/train", output="run")
    res = run("train", cfg, env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    test, train = tmp_path / "dg" / "test", tmp_path / "dg" / "train"
    assert res.stdout.splitlines()[-1] == (
        f"validation: its images were held out of {train} (val_split 0.25): from the same source as the "
        "training images, and best.npz chosen on them, they flatter the model; the honest figure is a separate "
        f"test folder's, such as {test}: cnncli evaluate {tmp_path / 'run'}/best.npz {test}")
    rep = run("report", tmp_path / "run", env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"scored on {test} (the test folder beside the training folder: images training never saw" in page
    (test.rename(tmp_path / "dg" / "elsewhere"))
    run("report", tmp_path / "run", env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert "so this figure flatters the model: a separate test folder (--data DIR) gives the honest one" in \
        (tmp_path / "run" / "report.html").read_text()


# --- 10. hints that point the right way ----------------------------------------------------

def test_hints_point_the_right_way(trained, tmp_path):
    cfg = trained / "run.yaml"
    res = run("train", cfg, "--set", "epochs=3", cwd=trained)
    assert res.stderr == (f"error: {cfg}: unknown key 'epochs' (did you mean 'train.epochs'?); allowed: model, data, "
                          "train, output (with --set epochs=3)\n")
    make_folder(tmp_path / "ev", classes=("A", "b"), per_class=2)
    res = run("evaluate", trained / "run" / "best.npz", tmp_path / "ev")
    assert res.stderr == (f"error: {tmp_path / 'ev'}: class folder 'A' is not one of the model's classes (a, b, c): "
                          "rename it to 'a'\n")
    res = run("train", "data/", cwd=trained)
    assert res.stderr == ("error: data: is a folder; give a YAML file (to train on the images in it, write a config "
                          "first: cnncli init DIR --data data)\n")
    make_folder(tmp_path / "parent" / "photos", per_class=2)
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "parent")
    assert res.stderr == (f"error: {tmp_path / 'parent'} holds one folder, photos, and a classifier needs two classes "
                          f"or more: did you mean --data {tmp_path / 'parent' / 'photos'}?\n")
    (tmp_path / "broken" / "x").mkdir(parents=True)
    (tmp_path / "broken" / "y").mkdir()
    (tmp_path / "broken" / "x" / "1.png").write_bytes(b"not a png")
    (tmp_path / "broken" / "y" / "2.png").write_bytes(b"")
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "broken")
    assert res.stderr == (f"error: {tmp_path / 'broken'}: none of its 2 image files can be read as an image (e.g. "
                          f"{tmp_path / 'broken' / 'x' / '1.png'}: not an image Pillow can read): replace them with "
                          "readable images\n")


def test_a_finished_run_is_not_sent_to_resume_and_back(trained):
    res = run("train", trained / "run.yaml", cwd=trained)
    again = run("train", "--resume", trained / "run", cwd=trained)
    assert res.returncode == again.returncode == 2
    assert res.stderr == (f"error: {trained / 'run'} already holds a run (config.yaml, metrics.csv, last.npz, "
                          "best.npz, skipped.txt): it finished its 1 epochs; train it longer with `cnncli train "
                          f"--resume {trained / 'run'} --set train.epochs=11`, start over with --force, or set "
                          "another output\n")
    assert "--set train.epochs=11" in again.stderr


# --- 12. README's quick-start figures: what they rest on ------------------------------------

def test_readme_quick_start_figures_match_the_config_and_say_where_they_came_from():
    """The epochs are the config's; the times and accuracy were measured (four fresh clones of
    `git clone` + the main command on the 2-core machine, 2026-12-06: 64.6 and 65.7 s with a 14-15 s
    compile and 98.2% in issue 29, 63.1 s with a 15.9 s compile and 98.0% for this change, 48.2 s with
    a 14.5 s compile and 98.0% at the read-through, load average 1.2-1.5; 2026-12-07, 50.9 s with a
    16.7 s compile and 98.0% after the warm-up took on the optimizers' kernels); the
    sentence must say when and where, so a changed figure comes with its measurement."""
    text = " ".join((ROOT / "README.md").read_text().split())
    epochs = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())["train"]["epochs"]
    assert f"{epochs} epochs) and reached 98.0–98.2% best validation accuracy" in text
    assert "took 48–66 s from a fresh clone (install, a one-time kernel compile of 14–17 s," in text
    assert "measured 2026-12-06 and 2026-12-07 while other jobs shared the machine" in text
    assert "pip install scikit-learn" in text      # scripts/export_digits.py needs it for the walkthrough
