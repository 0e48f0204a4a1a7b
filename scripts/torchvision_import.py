"""Do PyTorch's own ONNX exports of torchvision's classifiers import into cnncli, and compute what
ONNX Runtime computes? For each model definition (random weights: `weights=None`; only the
architecture is under test) and each opset, torch.onnx.export writes the file (the TorchScript
exporter, dynamo=False, and the dynamo exporter where --dynamo asks), then `cnncli import
--check` (run from this checkout with the main virtualenv) imports it and compares it with ONNX
Runtime on random inputs. Prints one row per export: the result, the largest difference relative
to the output's scale (the largest |logit| when over 1, as --check judges it), the import's wall time. Exit 1 if any export that PyTorch wrote failed to import or to match.

  /work/torchvenv/bin/python scripts/torchvision_import.py [--models a,b] [--opsets 11,13,17]
      [--dynamo] [--size 224] [--keep DIR] [--python /work/main/.venv/bin/python]

Needs PyTorch, torchvision (installed --no-deps), onnx and onnxscript in the venv that runs it: a
yardstick only, cnncli never imports them. torchvision's compiled operators (nms, roi_align...)
are for a CUDA build and fail to register on the CPU one; the model definitions need none of
them, so their registrations are skipped (an empty torchvision._meta_registrations).
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "regnet_y_400mf", "regnet_x_400mf", "googlenet", "squeezenet1_1", "shufflenet_v2_x0_5", "densenet121",
          "alexnet", "vgg11_bn", "mnasnet0_5", "inception_v3", "pad_probe"]
LINE = re.compile(r"largest difference ([0-9.eE+-]+) \(limit [0-9.eE+-]+(?: x ([0-9.eE+-]+))?")


def _torchvision():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


def pad_probe():
    """Not a torchvision model: the padding and reduction forms PyTorch code writes by hand
    (ZeroPad2d, F.pad, pools with padding, ceil_mode and count_include_pad, mean / amax over H, W)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class PadProbe(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, stride=2)
            self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.se = nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = F.relu(self.a(nn.ZeroPad2d((0, 1, 0, 1))(x)))            # TensorFlow-style 'same' by hand
            x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2, ceil_mode=True)  # zeros, then a max pool
            x = F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=True)
            x = F.avg_pool2d(F.pad(self.b(x), (0, 1, 1, 0)), 2, 1, count_include_pad=False)
            x = x * torch.sigmoid(self.se(x.mean((2, 3), keepdim=True)))
            return self.fc(torch.cat([x.mean((2, 3)), torch.amax(x, (2, 3))], 1))

    torch.manual_seed(0)
    return PadProbe().eval()


def export(name, opset, dynamo, size, path):
    import torch

    if name == "pad_probe":
        model = pad_probe()
    else:
        tv = _torchvision()
        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        torch.manual_seed(0)
        model = getattr(tv.models, name)(weights=None, **kwargs).eval()
    with torch.no_grad():
        for m in model.modules():   # running statistics that are not the identity, so that batchnorm counts
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model, (x,), str(path), opset_version=opset, dynamo=dynamo, input_names=["input"],
                      output_names=["logits"], **({} if dynamo else {"do_constant_folding": True}))


def check(python, path, out):
    t0 = time.perf_counter()
    r = subprocess.run([python, "-m", "cnncli", "import", str(path), str(out), "--check", "--force"],
                       cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    text = (r.stdout + r.stderr).strip()
    found = LINE.search(text)
    # relative to the output's scale (the largest |output| when over 1), as --check judges it
    diff = float(found.group(1)) / float(found.group(2) or 1) if found else None
    if r.returncode == 0:
        return "ok", diff, seconds, ""
    return ("differs" if r.returncode == 1 else "refused"), diff, seconds, text.splitlines()[-1][:200]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--opsets", default="11,13,17")
    ap.add_argument("--dynamo", action="store_true", help="also the dynamo exporter (at opset 18 and up)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--keep", type=Path, help="keep the .onnx files here")
    ap.add_argument("--python", default="/work/main/.venv/bin/python")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="tv_import_"))
    work.mkdir(parents=True, exist_ok=True)
    models, opsets = args.models.split(","), [int(o) for o in args.opsets.split(",")]
    runs = [(m, o, False) for o in opsets[:1] for m in models]    # every model at the first opset first
    if args.dynamo:
        runs += [(m, max(18, opsets[0]), True) for m in models]
    runs += [(m, o, False) for o in opsets[1:] for m in models]
    failed = 0
    print(f"{'model':22} {'opset':>5} {'exporter':10} {'result':8} {'rel diff':>10} {'import s':>8}  why")
    for name, opset, dynamo in runs:
        path = work / f"{name}_{opset}{'_dynamo' if dynamo else ''}.onnx"
        exporter = "dynamo" if dynamo else "torchscript"
        try:
            export(name, opset, dynamo, 299 if name == "inception_v3" else args.size, path)
        except Exception as e:   # PyTorch could not write it: not cnncli's failure, but reported
            print(f"{name:22} {opset:>5} {exporter:10} {'no file':8} {'':>10} {'':>8}  {str(e).splitlines()[0][:120]}")
            continue
        result, diff, seconds, why = check(args.python, path, work / (path.stem + "_cnncli"))
        failed += result != "ok"
        shown = f"{diff:.2e}" if diff is not None else "-"
        print(f"{name:22} {opset:>5} {exporter:10} {result:8} {shown:>10} {seconds:8.1f}  {why}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
