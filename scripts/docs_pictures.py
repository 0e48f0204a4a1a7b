"""Make README's pictures from the synthetic shapes: docs/curves.png (the quickstart's training
curves) and docs/explain.png (`cnncli explain` on one validation image).

  python scripts/docs_pictures.py            # about 15 s on 2 cores; writes only docs/*.png

It writes the data set, the run and its decode cache into a temporary folder, trains
configs/quickstart.yaml there exactly as the quick start does, and copies the two pictures.
Same config and seed give the same weights on the same machine (thread count), so the same
pictures.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPLAINED = "val/triangle/triangle_00003.png"


def main():
    sys.path.insert(0, str(ROOT))
    from cnncli.data.synthetic import write_shapes
    from cnncli.commands.explain import explain
    from cnncli.engine.progress import PlainReporter
    from cnncli.commands.train import train

    os.environ["CNNCLI_CURVES"] = "1"   # the curves are what we are here for
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative paths, as the quick start has them: the curves' title is runs/quickstart
        data, run = Path("data/shapes"), Path("runs/quickstart")
        write_shapes(data, per_class=600, size=32, n_classes=4, seed=0, val_per_class=100)  # = cnncli synth
        shutil.copytree(ROOT / "configs", "configs")   # its paths are relative to it: ../data, ../runs
        train(Path("configs/quickstart.yaml"), ["data.cache_dir=cache"], reporter=PlainReporter())
        shutil.copyfile(run / "curves.png", ROOT / "docs" / "curves.png")
        (result,) = explain(run / "best.npz", [str(data / EXPLAINED)], "explained")
        shutil.copyfile(result["png"], ROOT / "docs" / "explain.png")
        os.chdir(ROOT)
    print("wrote docs/curves.png and docs/explain.png")


if __name__ == "__main__":
    main()
