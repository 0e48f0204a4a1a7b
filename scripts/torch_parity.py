"""Does PyTorch compute what cnncli computes? The same network and weights in both, the same inputs,
and the largest difference in class probabilities.

  python scripts/torch_parity.py CHECKPOINT [IMAGE ...]    # a trained checkpoint, optional images
  python scripts/torch_parity.py --arch configs/models/resnet20.yaml
  python scripts/torch_parity.py --functions     # each activation and its derivative, value by value

A checkpoint runs on 16 random inputs (standard normal, i.e. already normalised) and on each
IMAGE, preprocessed as cnncli does (decode + resize, then (x / 255 - mean) / std). --arch builds
the network from an architecture file with random weights, random biases and random batchnorm
weights and running statistics, so that every stored array matters. PyTorch runs in eval mode
(dropout off, batchnorm on running statistics), as cnncli's predict. Exit status 1 when the
largest absolute difference in probabilities is above --tol (1e-5). Needs PyTorch:
  pip install torch==2.13.0   (a yardstick only: cnncli never imports it)
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def randomise(model, seed):
    """Random values in every array the forward pass reads (cnncli initialises biases to 0 and
    batchnorm to the identity, which would hide a mix-up of those arrays)."""
    rng = np.random.default_rng(seed)
    arrays = model.state_dict()
    for k, v in arrays.items():
        name = k.rsplit(".", 1)[1]
        layer = model.layers[int(k.split(".")[1])]
        if layer.kind == "batchnorm":
            arrays[k] = {"weight": rng.uniform(0.5, 1.5, v.shape), "bias": rng.normal(0, 0.2, v.shape),
                         "running_mean": rng.normal(0, 0.3, v.shape),
                         "running_var": rng.uniform(0.5, 2.0, v.shape)}[name].astype(v.dtype)
        elif name == "bias":
            arrays[k] = rng.normal(0, 0.1, v.shape).astype(v.dtype)
    model.load_state_dict(arrays)
    return model.state_dict()


def preprocess(paths, shape, resize, mean, std):
    from cnncli.data.decode import load_image
    from cnncli.kernels.augment import prepare_batch

    h, w, c = shape
    imgs = []
    for p in paths:
        try:
            imgs.append(load_image(Path(p), h, w, c, resize))
        except Exception as e:  # BadImage, or a missing file
            raise ValueError(f"{p}: {e}") from None
    imgs = np.stack(imgs)
    x = (imgs.astype(np.float64) / 255.0 - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    x = x.astype(np.float32)
    # the formula above, against the kernel that cnncli predict / evaluate use
    gap = float(np.abs(prepare_batch(imgs, mean, std).astype(np.float64) - x).max())
    return x, gap


def compare(model, net, x_nhwc):
    """-> (max |probability difference|, max |logit difference|, max |logit|) on one batch."""
    import torch

    x_nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        p_torch = net.probabilities(x_nchw).numpy()
        z_torch = net(x_nchw).numpy()
    p_ours = model.predict_proba(x_nhwc)
    z_ours = model.forward(x_nhwc, training=False)
    assert p_ours.shape == p_torch.shape, (p_ours.shape, p_torch.shape)
    return (float(np.abs(p_ours.astype(np.float64) - p_torch).max()),
            float(np.abs(z_ours.astype(np.float64) - z_torch).max()),
            float(np.abs(z_ours).max()))


def functions(tol):
    """Every activation function of layers/functions.py against torch.nn.functional's, on 200,000
    values in [-20, 20] and the kinks: the values and the derivatives (cnncli's from what it
    keeps: the output, or the input) -> exit status 1 above tol (relative to the value's scale)."""
    import torch

    from cnncli.kernels.activation import activate, activation_grad, keeps_input
    from cnncli.layers import FUNCTIONS
    from torch_graph import _activate

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.standard_normal(100000) * 5, np.linspace(-8, 8, 100001),
                        [-6, -3, 0, 3, 6, -20, 20]]).astype(np.float32).reshape(-1, 1)
    worst = 0.0
    for name in sorted(set(FUNCTIONS) - {"linear", "softmax"}):
        t = torch.tensor(z, requires_grad=True)
        y = _activate(t, name, 0.01)
        y.sum().backward()
        ours = activate(z.copy(), name, 0.01)
        grad = activation_grad(np.ones_like(z), (z if keeps_input(name) else ours).copy(), name, 0.01)
        dy = float(np.abs(ours - y.detach().numpy()).max() / max(1.0, np.abs(ours).max()))
        dg = float(np.abs(grad - t.grad.numpy()).max())
        worst = max(worst, dy, dg)
        print(f"{name:12} max |y - torch| / scale {dy:.2e}   max |dy/dz - torch| {dg:.2e}")
    print(f"largest difference {worst:.2e} ({'OK' if worst <= tol else 'FAILED'}, tolerance {tol:g})")
    return 0 if worst <= tol else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="a cnncli checkpoint (.npz)")
    ap.add_argument("images", nargs="*", help="images to run through both (checkpoint mode)")
    ap.add_argument("--arch", help="an architecture file: random weights instead of a checkpoint")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest allowed |difference| (default 1e-5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=16, help="random inputs (default 16)")
    ap.add_argument("--functions", action="store_true", help="compare the activation functions alone")
    a = ap.parse_args()
    if a.functions:
        sys.exit(functions(a.tol))
    if bool(a.arch) == bool(a.checkpoint):
        ap.error("give either a CHECKPOINT or --arch FILE")
    if a.arch and a.images:
        ap.error("images need a checkpoint (its mean and std); --arch runs random inputs only")

    import torch
    from torch_graph import torch_graph

    from cnncli import config

    from cnncli.errors import CnnError

    torch.manual_seed(a.seed)
    try:
        if a.arch:
            arch = config.load_architecture(a.arch)
            model = arch.build(seed=a.seed)
            arrays = randomise(model, a.seed + 1)
            shape, what = tuple(arch.input), a.arch
        else:
            from cnncli.commands import predict

            loaded = predict.load(a.checkpoint)
            model, shape, what = loaded.model, loaded.shape, a.checkpoint
            arrays = model.state_dict()
        if a.images:
            x, gap = preprocess(a.images, shape, loaded.resize, loaded.mean, loaded.std)
    except (CnnError, ValueError) as e:  # a bad file: one line, as cnncli says it
        print(f"error: {e}", file=sys.stderr)
        return 2
    net = torch_graph(model, arrays).eval()

    batches = [("random", np.random.default_rng(a.seed).standard_normal((a.n,) + shape).astype(np.float32))]
    if a.images:
        batches.append((f"{len(a.images)} image(s)", x))
    print(f"{what}: {len(model.layers)} layers, {model.n_params():,} parameters, head {model.head}, "
          f"torch {torch.__version__}")
    if a.images:
        print(f"  images: (x / 255 - mean) / std differs from cnncli's prepare_batch by {gap:.3e} at most")
    worst = 0.0
    for name, x in batches:
        dp, dz, zmax = compare(model, net, x)
        worst = max(worst, dp) if np.isfinite(dp) else np.inf  # NaN fails too
        print(f"  {name:>12}: max |prob diff| {dp:.3e}   max |logit diff| {dz:.3e}  (max |logit| {zmax:.3g})")
    verdict = "OK" if worst <= a.tol else "FAIL"
    print(f"largest absolute probability difference: {worst:.3e} ({verdict}, tolerance {a.tol:g})")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
