"""One epoch over 1,000 images of EfficientNet-Lite0 at 224x224 with its backbone frozen
(train.freeze: features, as `init --pretrained` writes it), with the frozen-feature cache and
without it, in the same process one after the other (so both see the same machine load).

The images are 1,000 crops (48-160 px, 5 classes) of scikit-image's photos. Prints, for each
way, the epoch's seconds (metrics.csv's `seconds`: the training batches alone) and the run's
wall time; for the cache, also the one-time computation of the features, and a second run that
reads them back.   python scripts/feature_cache_timing.py WORKDIR
"""

import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from skimage import data as photos

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field")
N = 1000


def build(folder):
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        img = getattr(photos, name)()
        h, w = img.shape[:2]
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(N // len(CLASSES)):
            side = int(rng.integers(48, 161))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            Image.fromarray(img[y:y + side, x:x + side]).save(d / f"{i}.png")


def main(work):
    from cnncli.commands.init_pretrained import write_pretrained
    from cnncli.commands.train import train
    from cnncli.engine.progress import PlainReporter

    work = Path(work)
    build(work / "images")
    write_pretrained(work / "cfg", work / "images", "efficientnet_lite0", force=True)
    raw = yaml.safe_load((work / "cfg" / "train.yaml").read_text())
    raw["data"].update({"val_split": 0.0, "cache_dir": str(work / "cache")})
    raw["train"]["epochs"] = 1
    for name, cache in (("cached", True), ("cached-again", True), ("uncached", False)):
        raw["train"]["feature_cache"] = cache
        raw["output"] = str(work / name)
        path = work / "cfg" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        start = time.perf_counter()
        result = train(path, force=True, reporter=PlainReporter())
        wall = time.perf_counter() - start
        row = result.state.history[0]
        print(f"RESULT {name}: epoch over {N} images {row['seconds']:.3f}s ({row['images_per_s']:.0f} images/s); "
              f"whole run {wall:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
