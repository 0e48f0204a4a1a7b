"""The reference linear probe: logistic regression (scikit-learn, defaults: L2, C=1) on the pooled
1,280 features of the reference PyTorch EfficientNet-Lite0 (scripts/pretrained_parity.py), the
images decoded and normalised exactly as cnncli's fine-tuning config does (224x224, the catalog's
resize rule, `imagenet`; (pixel / 255 - 127/255) / (128/255)). Trains on FOLDER/train, scores
FOLDER/test.

  /work/torchvenv/bin/python scripts/linear_probe.py FOLDER [WEIGHTS.pth]   -> one JSON line
Needs PyTorch and scikit-learn: a yardstick only, never part of cnncli or its tests.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def images(folder, resize):
    from cnncli.data.decode import load_image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    x, y = [], []
    for k, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            x.append(load_image(path, 224, 224, 3, resize))
            y.append(k)
    x = (np.stack(x).astype(np.float32) / 255 - np.float32(127 / 255)) / np.float32(128 / 255)
    return x, np.array(y)


def pooled(net, x, batch=32):
    """The reference network's features before its classifier: relu6(bn(conv_head)) averaged."""
    import torch
    from torch.nn import functional as F

    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            t = torch.from_numpy(np.ascontiguousarray(x[s:s + batch].transpose(0, 3, 1, 2)))
            t = F.relu6(net._bn0(net._conv_stem(t)))
            for b in net._blocks:
                t = b(t)
            out.append(F.relu6(net._bn1(net._conv_head(t))).mean((2, 3)).numpy())
    return np.concatenate(out)


def main(folder, weights=None):
    import torch
    from sklearn.linear_model import LogisticRegression

    from cnncli.pretrained.catalog import CATALOG
    from pretrained_parity import reference_network

    torch.set_num_threads(2)
    start = time.perf_counter()
    net = reference_network()
    weights = weights or CATALOG["efficientnet_lite0"].weights_path()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    folder = Path(folder)
    resize = CATALOG["efficientnet_lite0"].resize       # as init --pretrained's config decodes them
    xtr, ytr = images(folder / "train", resize)
    xte, yte = images(folder / "test", resize)
    ftr, fte = pooled(net, xtr), pooled(net, xte)
    probe = LogisticRegression(max_iter=5000).fit(ftr, ytr)
    acc = float((probe.predict(fte) == yte).mean())
    print(json.dumps({"test_acc": acc, "train": len(ytr), "test": len(yte), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
