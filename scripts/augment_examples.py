"""One example of each augmentation key, written as in a config's data.augment and parsed by the
product's own parser: the rows of augment_grid.py's picture and of augment_speed.py's table."""

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnncli.config import Augment, parse_section  # noqa: E402

KEYS = ["flip: true", "vflip: true", "crop_padding: 4", "rotate: 30", "scale: [0.7, 1.3]", "translate: 0.15",
        "shear: 20", "random_resized_crop: {scale: [0.35, 1], ratio: [0.75, 1.33]}", "brightness: 0.4",
        "contrast: 0.6", "saturation: 0.9", "cutout: {size: 10, count: 1}", "mixup: 0.4", "cutmix: 1.0"]
MIXING = ("mixup", "cutmix")   # keys that blend two images of the batch


def augment(text):
    """'rotate: 30, flip: true' -> the Augment that data.augment: {rotate: 30, flip: true} gives."""
    return parse_section(Augment, yaml.safe_load("{" + text + "}"), "data.augment")


EXAMPLES = [(text, augment(text)) for text in KEYS]
ALL = augment(", ".join(KEYS))   # every key at once
