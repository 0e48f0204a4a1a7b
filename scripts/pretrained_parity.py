"""Does cnncli's EfficientNet-Lite0 compute what the reference PyTorch network computes?

The reference is built here in PyTorch from the published recipe (ml-illustrated's
EfficientNet-Lite-PyTorch, itself lukemelas' EfficientNet-PyTorch: TensorFlow 'same' padding
computed for the 224x224 input, batchnorm eps 1e-3, ReLU6, residual where stride 1 and channels
unchanged), with module names that make the published state_dict load strictly, and is fed the
state_dict through torch.load. cnncli runs the checkpoint `cnncli pretrained get` wrote from the
same file. Both see the same inputs: the photos decoded and normalised as `cnncli predict` does,
and random normal inputs. Prints the top-5 of each photo and the largest probability difference;
exit 1 above --tol (1e-4).

  --preprocessing  also: the top-5 under the preprocessing the weights were trained with (a centre
                   crop of 224/256 of the shorter side, bicubic to 224: TensorFlow's eval rule,
                   done here with Pillow) against the checkpoint's rule (`imagenet` since it exists), in the reference network
  --time           cnncli's one-image predict (in process, after a warm-up) and batch-16 inference

  python scripts/pretrained_parity.py [--weights FILE] [--preprocessing] [--time] [IMAGE ...]
Needs PyTorch (a yardstick only: cnncli never imports it) and scikit-image for the default photos.
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (repeats, kernel, stride, expand ratio, out channels) per stage; the stem gives 32 channels
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def _blocks():
    """-> (SameConv, bn, Block): the reference's building blocks, named as in its state_dict."""
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        """TensorFlow 'SAME' for a fixed input size: total = max((ceil(i/s)-1) s + k - i, 0), the
        odd pixel at the bottom / right."""

        def __init__(self, cin, cout, k, stride, size, groups=1):
            super().__init__(cin, cout, k, stride, 0, groups=groups, bias=False)
            pads = []
            for i in (size, size):
                o = math.ceil(i / stride)
                total = max((o - 1) * stride + k - i, 0)
                pads.append((total // 2, total - total // 2))
            (t, b), (le, r) = pads
            self.pad = (le, r, t, b)

        def forward(self, x):
            return F.conv2d(F.pad(x, self.pad), self.weight, None, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, stride, expand, size):
            super().__init__()
            wide = cin * expand
            if expand != 1:
                self._expand_conv, self._bn0 = SameConv(cin, wide, 1, 1, size), bn(wide)
            self._depthwise_conv = SameConv(wide, wide, k, stride, size, groups=wide)
            self._bn1 = bn(wide)
            self._project_conv = SameConv(wide, cout, 1, 1, math.ceil(size / stride))
            self._bn2 = bn(cout)
            self.expand, self.residual = expand != 1, stride == 1 and cin == cout

        def forward(self, x):
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
            return y + x if self.residual else y

    return SameConv, bn, Block


def reference_network(image_size=224):
    from torch import nn
    from torch.nn import functional as F

    SameConv, bn, Block = _blocks()

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            size = image_size
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, size), bn(32)
            size, cin, blocks = math.ceil(size / 2), 32, []
            for repeats, k, stride, expand, cout in STAGES:
                for r in range(repeats):
                    s = stride if r == 0 else 1
                    blocks.append(Block(cin, cout, k, s, expand, size))
                    size, cin = math.ceil(size / s), cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = SameConv(320, 1280, 1, 1, size), bn(1280)
            self._dropout = nn.Dropout(0.2)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(self._dropout(x.mean((2, 3))))

    return Lite0()


def default_photos():
    try:
        from skimage import data
    except ImportError:
        sys.exit("scikit-image is not installed in this Python: give the photos as IMAGE arguments")
    folder = Path(data.__file__).parent
    return [folder / n for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")]


def cnncli_inputs(paths, loaded):
    """The photos as `cnncli predict` makes them: uint8 (N, H, W, C) and normalised float32."""
    from cnncli.data.decode import load_image
    from cnncli.kernels.augment import prepare_batch

    h, w, c = loaded.shape
    imgs = np.stack([load_image(Path(p), h, w, c, loaded.resize) for p in paths])
    return imgs, prepare_batch(imgs, loaded.mean, loaded.std, None, None, None)


def tf_eval_inputs(paths, mean, std, size=224, padding=32):
    """TensorFlow's EfficientNet eval crop: the centred square of size/(size+padding) of the
    shorter side, resized bicubic to size x size (here with Pillow)."""
    from PIL import Image

    out = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        side = size / (size + padding) * min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
        out.append((np.asarray(im, np.float32) / 255 - np.float32(mean)) / np.float32(std))
    return np.stack(out).astype(np.float32)


def torch_probs(net, x_nhwc):
    import torch
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))), 1).numpy()


def top5(p, classes):
    return ", ".join(f"{classes[j]} {p[j]:.3f}" for j in np.argsort(-p)[:5])


def timing(loaded, imgs):
    from cnncli.commands.predict import _scores

    one, batch = imgs[:1], np.concatenate([imgs] * math.ceil(16 / len(imgs)))[:16]
    _scores(loaded, one)                       # compile / warm up
    t1 = []
    for _ in range(5):
        t = time.perf_counter()
        _scores(loaded, one)
        t1.append(time.perf_counter() - t)
    t16 = []
    for _ in range(3):
        t = time.perf_counter()
        _scores(loaded, batch, batch_size=16)
        t16.append(time.perf_counter() - t)
    print(f"cnncli one image (forward, after warm-up): median {np.median(t1) * 1e3:.0f} ms of 5; batch of 16: "
          f"median {np.median(t16):.2f} s of 3 = {16 / np.median(t16):.1f} images/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--weights", help="the .pth file (default: the installed package's)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--random", type=int, default=8, help="random normal inputs besides the photos")
    ap.add_argument("--preprocessing", action="store_true")
    ap.add_argument("--time", action="store_true")
    args = ap.parse_args()

    import torch
    from cnncli.commands.predict import _scores, load
    from cnncli.pretrained.catalog import CATALOG
    from cnncli.pretrained.convert import get

    torch.set_num_threads(2)
    entry = CATALOG["efficientnet_lite0"]
    weights = Path(args.weights) if args.weights else entry.weights_path()
    net = reference_network()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _ = get(entry.name, tmp, weights)
        loaded = load(ckpt)
    paths = [Path(p) for p in args.images] or default_photos()
    imgs, x = cnncli_inputs(paths, loaded)
    rand = np.random.default_rng(0).standard_normal((args.random, *loaded.shape)).astype(np.float32)
    ours = loaded.model.evaluate([(np.concatenate([x, rand]), None)])[0]
    ref = torch_probs(net, np.concatenate([x, rand]))
    via_predict = _scores(loaded, imgs)[0]     # the path `cnncli predict` takes, from uint8 pixels
    diff = float(np.abs(ours - ref).max())
    for i, p in enumerate(paths):
        print(f"{p.name}: cnncli  {top5(via_predict[i], loaded.classes)}")
        print(f"{' ' * len(p.name)}  PyTorch {top5(ref[i], loaded.classes)}")
    print(f"largest probability difference, cnncli against PyTorch: {diff:.2e} over {len(paths)} photos and "
          f"{args.random} random inputs (photos alone {np.abs(ours - ref)[:len(paths)].max():.2e}; through "
          f"predict's batch path {np.abs(via_predict - ref[:len(paths)]).max():.2e})")
    if args.preprocessing:
        tf = torch_probs(net, tf_eval_inputs(paths, entry.mean, entry.std))
        for i, p in enumerate(paths):
            print(f"{p.name}: trained rule (crop 224/256, bicubic) {top5(tf[i], loaded.classes)}")
        agree = int((tf.argmax(1) == ref[:len(paths)].argmax(1)).sum())
        print(f"cnncli's {loaded.resize} rule against the trained rule: top-1 agrees on {agree} of {len(paths)} photos; "
              f"largest probability difference {np.abs(tf - ref[:len(paths)]).max():.3f}")
    if args.time:
        timing(loaded, imgs)
    return 0 if diff <= args.tol else 1


if __name__ == "__main__":
    from cnncli.errors import CnnError
    try:
        sys.exit(main())
    except CnnError as e:
        sys.exit(f"error: {e}")
