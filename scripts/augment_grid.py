"""A grid of augmented samples, one row per augmentation key, for docs/augment.md.

    python scripts/augment_grid.py docs/augment.png

Each row applies one key (at the strength its label shows) to the same synthetic shapes, drawn in
memory as `cnncli synth` draws them, through the same code training uses (Batches.plan and make,
one epoch generator). The first row is the originals. Composed with Pillow alone.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnncli.config import Augment, Cutout, RandomResizedCrop  # noqa: E402
from cnncli.data.batches import Batches, channel_stats  # noqa: E402
from cnncli.data.synthetic import SHAPES, draw  # noqa: E402

SIZE, ZOOM, COLUMNS = 32, 3, 6
ROWS = [
    ("flip: true", Augment(flip=True)),
    ("vflip: true", Augment(vflip=True)),
    ("crop_padding: 4", Augment(crop_padding=4)),
    ("rotate: 30", Augment(rotate=30.0)),
    ("scale: [0.7, 1.3]", Augment(scale=[0.7, 1.3])),
    ("translate: 0.15", Augment(translate=0.15)),
    ("shear: 20", Augment(shear=20.0)),
    ("random_resized_crop: {scale: [0.35, 1], ratio: [0.75, 1.33]}",
     Augment(random_resized_crop=RandomResizedCrop([0.35, 1.0], [0.75, 1.33]))),
    ("brightness: 0.4", Augment(brightness=0.4)),
    ("contrast: 0.6", Augment(contrast=0.6)),
    ("saturation: 0.9", Augment(saturation=0.9)),
    ("cutout: {size: 10, count: 1}", Augment(cutout=Cutout(10, 1))),
    ("mixup: 0.4   (pairs: columns 1-6, 2-5, 3-4)", Augment(mixup=0.4)),
    ("cutmix: 1.0   (pairs: columns 1-6, 2-5, 3-4)", Augment(cutmix=1.0)),
    ("rotate 15, scale [0.85, 1.15], translate 0.1, shear 10, contrast 0.3, cutout 8",
     Augment(rotate=15.0, scale=[0.85, 1.15], translate=0.1, shear=10.0, contrast=0.3, cutout=Cutout(8, 1))),
]


def samples():
    """COLUMNS shapes, one after another through the classes (uint8, (n, SIZE, SIZE, 3))."""
    rng = np.random.default_rng(11)
    return np.stack([draw(SHAPES[k % 4], SIZE, rng) for k in range(COLUMNS)])


def row_images(images, augment):
    """The images through one epoch's plan (in order, so column k is image k), back in pixels:
    pixel = 255 (x std + mean), so what is filled with the mean shows as the mean colour."""
    n = len(images)
    mean, std = channel_stats(images, np.arange(n))
    batches = Batches(images, np.arange(n) % 4, np.arange(n), mean, std, n, augment)
    order, p = batches.plan(np.random.default_rng([5, 0, 0]), shuffle=False)
    x, _ = batches.make(order, p, 0)
    return np.clip(np.round((x * std + mean) * 255), 0, 255).astype(np.uint8)


def main(out):
    images = samples()
    cell, label_w, pad = SIZE * ZOOM, 340, 4
    rows = [("original", images)] + [(label, row_images(images, augment)) for label, augment in ROWS]
    grid = Image.new("RGB", (label_w + len(images) * (cell + pad), len(rows) * (cell + pad) + pad), "white")
    ink = ImageDraw.Draw(grid)
    for r, (label, tiles) in enumerate(rows):
        top = pad + r * (cell + pad)
        cut = label.rfind(",", 0, 52)
        lines = [label] if len(label) < 56 else [label[:cut + 1], "  " + label[cut + 2:]]
        for k, line in enumerate(lines):
            ink.text((6, top + cell // 2 - 6 * len(lines) + 12 * k), line, fill="black")
        for c, tile in enumerate(tiles):
            grid.paste(Image.fromarray(tile).resize((cell, cell), Image.Resampling.NEAREST),
                       (label_w + c * (cell + pad), top))
    grid.save(out, optimize=True)
    print(f"wrote {out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/augment.png")
