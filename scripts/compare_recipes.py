"""Train a config under several recipes and seeds, one run after another; choose best.npz on the
validation split as training does, then score it on a test folder it never saw.

    python scripts/compare_recipes.py configs/digits.yaml data/digits/test \
        --recipes digits-before digits-before-60 warp-ema-ls-60 --seeds 10 11 12 13 14
    python scripts/compare_recipes.py configs/shapes_hard.yaml data/hard/test \
        --recipes hard-before hard-before-60 warp-60 rotation-60 rotation-ema-60 --seeds 10 11 12

A recipe is a list of --set overrides (RECIPES below); `--set KEY=VALUE` adds overrides to every
recipe. Prints one line per run, then per recipe the mean and sample standard deviation of the
test accuracy over the seeds, without and with --tta (the same best.npz).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnncli.commands.evaluate import evaluate  # noqa: E402
from cnncli.engine.progress import QuietReporter  # noqa: E402
from cnncli.commands.train import train  # noqa: E402

WARP = "data.augment={rotate: 10, scale: [0.9, 1.1], translate: 0.1, shear: 10}"   # what init --data writes
ROTATION = "data.augment={rotate: 180, flip: true, vflip: true, scale: [0.8, 1.2], translate: 0.1}"
OFF = ["train.ema=0", "train.label_smoothing=0"]
RECIPES = {   # each sets the whole augment section, so a recipe means the same whatever the config says
    "shipped": [],                                                          # the config as it is
    "none": ["data.augment={}"] + OFF,
    "digits-before": ["data.augment={crop_padding: 1}", "train.epochs=30"] + OFF,   # configs/digits.yaml before
    "digits-before-60": ["data.augment={crop_padding: 1}", "train.epochs=60"] + OFF,
    "hard-before": ["data.augment={crop_padding: 2}", "train.epochs=30"] + OFF,     # init --data before
    "hard-before-60": ["data.augment={crop_padding: 2}", "train.epochs=60"] + OFF,
    "warp-60": [WARP, "train.epochs=60"] + OFF,
    "warp-ema-60": [WARP, "train.epochs=60", "train.ema=0.99", "train.label_smoothing=0"],
    "warp-ema-ls-60": [WARP, "train.epochs=60", "train.ema=0.99", "train.label_smoothing=0.1"],
    "rotation-60": [ROTATION, "train.epochs=60"] + OFF,
    "rotation-ema-60": [ROTATION, "train.epochs=60", "train.ema=0.99", "train.label_smoothing=0"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("test")
    ap.add_argument("--recipes", nargs="+", default=["shipped"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", dest="extra", action="append", default=[], help="an override for every recipe")
    ap.add_argument("--recipe", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE...]",
                    help="define a recipe on the command line")
    ap.add_argument("--out", default="runs/recipes")
    ap.add_argument("--json", help="append one JSON line per run to this file")
    args = ap.parse_args()
    recipes = dict(RECIPES)
    for item in args.recipe:
        name, _, sets = item.partition("=")
        recipes[name] = [s for s in sets.split(";") if s]
    results = {}
    for name in args.recipes:
        for seed in args.seeds:
            out = Path(args.out) / Path(args.config).stem / name / f"seed{seed}"
            overrides = recipes[name] + args.extra + [f"train.seed={seed}", f"output={out}"]
            start = time.perf_counter()
            res = train(args.config, overrides, force=True, reporter=QuietReporter())
            seconds = time.perf_counter() - start
            plain = evaluate(out / "best.npz", args.test)["accuracy"]
            tta = evaluate(out / "best.npz", args.test, tta=True)["accuracy"]
            row = {"recipe": name, "seed": seed, "test_acc": plain, "test_acc_tta": tta, "seconds": round(seconds, 1),
                   "best_epoch": res.state.best["epoch"], "data_wait": res.state.history[-1]["data_wait"],
                   "overrides": recipes[name] + args.extra}
            results.setdefault(name, []).append(row)
            print(f"{name:>18} seed {seed}: test {plain:.2%}  with --tta {tta:.2%}  ({seconds:.0f}s, best epoch "
                  f"{row['best_epoch']}, data wait {row['data_wait']:.1%})", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"config": args.config, **row}) + "\n")
    print()
    for name, rows in results.items():
        for key, label in (("test_acc", "test"), ("test_acc_tta", "--tta")):
            acc = [100 * r[key] for r in rows]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            print(f"{name:>18} {label:>6}: {statistics.mean(acc):.2f} ± {sd:.2f}  "
                  f"(min {min(acc):.2f}, max {max(acc):.2f}, n={len(acc)})")


if __name__ == "__main__":
    main()
