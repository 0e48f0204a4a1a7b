"""How far pHash tolerates a cut, and what the versions of data/duplicates.py find (issue 27).

  python scripts/phash_crops.py WORK [tolerance] [recall] [distinct] [timing]

tolerance: the 550 distinct 64 x 64 crops of scripts/audit_photos.py, each cut by 0, 2, 4 and 6
  pixels (one side, a corner, all four), hashed whole, against the original cut by 0-14.5% in
  steps of 0.5%: pHash bits apart by mismatch (the version's cut minus the copy's, in %).
recall: every other crop and copies of it (cut 1-7 pixels of 64 on a random side or corner or 1-4
  all round, x0.5, x1.5, JPEG q70, and a 4-pixel side or corner cut saved as JPEG q70): the share
  within MAX_BITS by `distance` (found), per kind, with and without the thumbnail rule, the
  thumbnails' RMS difference at the best version, and how many missed cut copies are of near-flat
  crops (the grey 32 x 32 whole's standard deviation under 10 of 255).
distinct: near pairs (`find_pairs`) among sets with no copy, with and without the thumbnail rule:
  photo crops on grids of several sizes and offsets (no two crops of a set share a pixel) and
  `cnncli synth` shapes at 64 px.
timing: `near_pairs` on N random hashes and thumbnails (N = 10,000 and 50,000).
Writes WORK/phash_crops.json.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_photos import PHOTOS, crops  # noqa: E402
from cnncli.data import duplicates as D  # noqa: E402
from cnncli.data.decode import load_image  # noqa: E402

SHAPES = {"side": [(0, 0, 1, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 1)],
          "corner": [(0, 0, 1, 1), (1, 1, 0, 0), (0, 1, 1, 0), (1, 0, 0, 1)], "centred": [(1, 1, 1, 1)]}


def grey(img, work):
    """A PIL image -> the (READ, READ) grey `fingerprint` hashes (saved and read back as a PNG)."""
    p = work / "tmp.png"
    img.save(p)
    return load_image(p, D.READ, D.READ, 1, "stretch")[..., 0]


def cut(img, sides, px):
    w, h = img.size
    l, t, r, b = [px * s for s in sides]
    return img.crop((l, t, w - r, h - b))


def tolerance(work):
    shares = np.arange(0, 0.1451, 0.005)
    out = {}
    for name, (sides, *_) in SHAPES.items():
        mism, bits = [], []
        for _, _, _, arr in crops():
            img = Image.fromarray(arr)
            h, _ = D.versions(grey(img, work), [tuple(c * s for s in sides) for c in shares])
            for px in (0, 2, 4, 6):
                w, _ = D.versions(grey(cut(img, sides, px), work), [(0, 0, 0, 0)])
                mism.append(100 * (shares - px / 64))
                bits.append(D.hamming(w[0], np.array(h, np.uint64)))
        mism, bits = np.concatenate(mism), np.concatenate(bits)
        out[name] = {f"{m:+.0f}%": [float(np.median(bits[sel])), float(np.percentile(bits[sel], 90)),
                                    round(float(np.mean(bits[sel] <= D.MAX_BITS)), 3)]
                     for m in range(-4, 5) for sel in [np.abs(mism - m) < 0.26]}
        print(name, "mismatch: [median bits, 90th percentile, share within MAX_BITS]", out[name], flush=True)
    return out


def _copies(img, rng):
    """-> [(kind, copy, jpeg)] of one 64 x 64 crop."""
    out = [(f"{kind}{px}", cut(img, SHAPES[kind][rng.integers(len(SHAPES[kind]))], px), False)
           for kind, top in (("side", 7), ("corner", 7), ("centred", 4)) for px in range(1, top + 1)]
    out += [("x0.5", img.resize((32, 32), Image.Resampling.BICUBIC), False),
            ("x1.5", img.resize((96, 96), Image.Resampling.BICUBIC), False), ("jpeg70", img, True)]
    out += [(f"{kind}4+jpeg70", cut(img, SHAPES[kind][rng.integers(4)], 4), True) for kind in ("side", "corner")]
    return out


def recall(work):
    rng = np.random.default_rng(5)
    found = {}
    for _, _, _, arr in crops()[::2]:
        img = Image.fromarray(arr)
        g = grey(img, work)
        h0, t0 = D.versions(g)
        flat = np.asarray(Image.fromarray(g).resize((D.SIDE, D.SIDE), Image.Resampling.BILINEAR), float).std() < 10
        for kind, copy, jpeg in _copies(img, rng):
            p = work / ("tmp.jpg" if jpeg else "tmp.png")
            copy.save(p, quality=70) if jpeg else copy.save(p)
            h, t = D.versions(load_image(p, D.READ, D.READ, 1, "stretch")[..., 0])
            near = D.hamming(h[0], np.array(h0, np.uint64)) <= D.MAX_BITS       # versions of the original
            rms = D.thumb_rms(t[0], t0[near]).min() if near.any() else np.inf
            found.setdefault(kind, []).append((int(D.distance(h0, h, t0, t)) <= D.MAX_BITS,
                                               int(D.distance(h0, h)) <= D.MAX_BITS, rms, flat))
    out = {k: f"{sum(f[0] for f in v)}/{len(v)}" for k, v in found.items()}
    out = {"found": out, "found_without_thumbnails": {k: f"{sum(f[1] for f in v)}/{len(v)}" for k, v in found.items()}}
    rms = np.array([f[2] for v in found.values() for f in v if f[1] and np.isfinite(f[2])])
    missed = [f[3] for k, v in found.items() if k[0] in "sc" and "jpeg" not in k for f in v if not f[0]]
    out["missed_cut_copies"] = {"all": len(missed), "of_near_flat_crops": int(sum(missed))}
    out["thumbnail_rms_of_found"] = {q: round(float(np.percentile(rms, q)), 2) for q in (50, 90, 99, 99.5, 100)}
    print(json.dumps(out), flush=True)
    return out


def _grid(side, offset):
    import skimage.data as sd
    for name in PHOTOS:
        img = getattr(sd, name)()
        img = (np.stack([img] * 3, axis=-1) if img.ndim == 2 else img)[..., :3]
        for r in range((img.shape[0] - offset) // side):
            for c in range((img.shape[1] - offset) // side):
                y, x = offset + r * side, offset + c * side
                yield f"{name}_{r}_{c}", img[y:y + side, x:x + side]


def _pairs(folder, files):
    prints = [D.fingerprint(p) for p in files]
    name = [str(p.relative_to(folder)) for p in files]
    return {rule: [(name[p.a], name[p.b], p.bits) for p in D.find_pairs(prints, max_rms=rms)]
            for rule, rms in (("pairs", D.THUMB_RMS), ("pairs_without_thumbnails", np.inf))}


def distinct(work):
    from cnncli.data.synthetic import write_shapes
    out = {}
    for side, offset in ((64, 0), (48, 20), (56, 8), (64, 32), (80, 16), (96, 40)):
        folder = work / f"grid{side}_{offset}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for name, arr in _grid(side, offset):
            files.append(folder / f"{name}.png")
            Image.fromarray(arr).save(files[-1])
        out[f"photo crops {side} px, offset {offset}"] = {"images": len(files), **_pairs(folder, files)}
    folder = work / "shapes64"
    write_shapes(folder, 100, 64, 4, 0, 0, 0, False)
    files = sorted(folder.rglob("*.png"))
    out["synth shapes 64 px"] = {"images": len(files), **_pairs(folder, files)}
    for k, v in out.items():
        print(k, v["images"], "images,", len(v["pairs"]), "pairs", v["pairs"][:6], "without thumbnails",
              len(v["pairs_without_thumbnails"]), v["pairs_without_thumbnails"][:6], flush=True)
    return out


def timing(work, sizes=(10_000, 50_000)):
    out = {}
    for n in sizes:
        rng = np.random.default_rng(0)
        v = len(D.BOXES)
        h = rng.integers(0, 2 ** 63, (n, v), dtype=np.int64).astype(np.uint64) * np.uint64(2) \
            + rng.integers(0, 2, (n, v)).astype(np.uint64)
        th = rng.integers(0, 256, (n, v, D.THUMB * D.THUMB)).astype(np.uint8)
        t0 = time.perf_counter()
        D.near_pairs(h, th)
        out[n] = round(time.perf_counter() - t0, 1)
        print(f"near_pairs N={n} V={v}: {out[n]} s", flush=True)
    return out


if __name__ == "__main__":
    work = Path(sys.argv[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    parts = {"tolerance": tolerance, "recall": recall, "distinct": distinct, "timing": timing}
    which = sys.argv[2:] or list(parts)
    result = {k: parts[k](work) for k in which}
    (work / "phash_crops.json").write_text(json.dumps(result, indent=1))
