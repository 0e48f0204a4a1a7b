import os

import numpy as np
import pytest

# Every training run draws curves.png through a helper process that costs ~0.5 s of CPU; the
# suite trains ~40 times, doubling its time. Only the tests about the curves turn it on
# (test_curves.py); CNNCLI_CURVES=1 pytest draws them in every run.
os.environ.setdefault("CNNCLI_CURVES", "0")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory):
    """The quickstart network trained a few epochs on a reduced synthetic shapes set (500 images a
    class, 8 epochs, lr 0.005: about 96% validation accuracy in ~7 s on 2 cores), for the tests of
    what cnncli draws: Grad-CAM, explain, evaluate --out, report. -> (run folder, data root,
    decode cache folder). The data root holds boxes.csv, each shape's bounding box."""
    from pathlib import Path

    from cnncli.data.synthetic import write_shapes
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train

    root = tmp_path_factory.mktemp("shapes")
    data, cache, run = root / "data", root / "cache", root / "run"
    write_shapes(data, per_class=500, size=32, n_classes=4, seed=0, val_per_class=50)
    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    train(config, [f"data.train={data / 'train'}", f"data.val={data / 'val'}", f"data.cache_dir={cache}",
                   "train.epochs=8", "train.lr=0.005", f"output={run}"], reporter=QuietReporter())
    return run, data, cache


def without_launcher(**extra):
    """os.environ without an MPI or Slurm launcher's variables (a test run inside one would
    otherwise make every cnncli it starts a rank), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_"))}
    return dict(env, **extra)


def sitecustomize(folder, code):
    """A folder holding a sitecustomize.py with `code`: on PYTHONPATH, every Python process runs it
    at start-up (the tests' way to hide a module or inject a fault into one rank)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return folder
