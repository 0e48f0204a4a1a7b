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

from cnncli.data.batches import Batches, channel_stats  # noqa: E402
from cnncli.data.synthetic import SHAPES, draw  # noqa: E402

from augment_examples import EXAMPLES, MIXING, augment  # noqa: E402  (beside this script)

SIZE, ZOOM, COLUMNS = 32, 3, 6
ROWS = [(text + ("   (pairs: columns 1-6, 2-5, 3-4)" if text.split(":")[0] in MIXING else ""), aug)
        for text, aug in EXAMPLES]
COMBINED = "rotate: 15, scale: [0.85, 1.15], translate: 0.1, shear: 10, contrast: 0.3, cutout: {size: 8}"
ROWS.append((COMBINED, augment(COMBINED)))      # the label is the config text, as in every other row


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
