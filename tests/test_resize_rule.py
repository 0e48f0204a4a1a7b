"""data.resize: imagenet, ImageNet's evaluation rule (224/256 centre crop, bicubic), against
hand-computed cases, and carried through training's checkpoint into predict."""

import numpy as np
import yaml
from PIL import Image

from cnncli.commands import predict as predict_module
from cnncli.commands.predict import load
from cnncli.commands.train import train
from cnncli.data.decode import imagenet_box, load_image
from cnncli.engine.progress import QuietReporter


def test_the_box_is_224_of_256_of_the_shorter_side_centred():
    assert imagenet_box(256, 256, 224, 224) == (16.0, 16.0, 240.0, 240.0)      # shorter side 256 -> 224
    assert imagenet_box(512, 256, 224, 224) == (144.0, 16.0, 368.0, 240.0)     # centred along the longer side
    assert imagenet_box(16, 8, 7, 7) == (4.5, 0.5, 11.5, 7.5)


def test_a_large_jpeg_is_drafted_no_smaller_than_the_region_imagenet_keeps(tmp_path, monkeypatch):
    """Draft mode decodes a JPEG at 1/2, 1/4 or 1/8 scale, at least the size asked for. imagenet keeps
    224/256 of the region, so it asks for 256/224 more: a 1000x1000 photo for 224x224 is drafted to
    500x500, not 250x250 (whose 218.75-pixel region would then be scaled up)."""
    from PIL import JpegImagePlugin

    seen = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: seen.append(size) or real(self, mode, size))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)).save(tmp_path / "big.jpg", quality=90)
    load_image(tmp_path / "big.jpg", 224, 224, 3, "imagenet")
    load_image(tmp_path / "big.jpg", 224, 224, 3, "crop")
    assert seen == [(256, 256), (224, 224)]


def test_a_ramp_is_cut_and_resampled_as_computed_by_hand(tmp_path):
    # 16 wide, 8 high, value 10 x in column x. The box (4.5, 0.5, 11.5, 7.5) is 7x7: scale 1, a
    # shift of half a pixel, so output column j samples x = 4.5 + j, where bicubic (which
    # reproduces a straight line exactly) gives 10 (4.5 + j) = 45 + 10 j, in every row.
    ramp = np.tile((np.arange(16) * 10).astype(np.uint8), (8, 1))
    Image.fromarray(ramp, "L").save(tmp_path / "ramp.png")
    got = load_image(tmp_path / "ramp.png", 7, 7, 1, "imagenet")[:, :, 0]
    np.testing.assert_array_equal(got, np.tile(45 + 10 * np.arange(7), (7, 1)))
    crop = load_image(tmp_path / "ramp.png", 7, 7, 1, "crop")[:, :, 0]    # the whole centred 8x8: another cut
    assert not np.array_equal(crop, got)
    same = load_image(tmp_path / "ramp.png", 8, 16, 1, "imagenet")[:, :, 0]   # the input's own size is cropped too
    assert same.shape == (8, 16) and not np.array_equal(same, ramp)


def test_training_records_the_rule_and_predict_decodes_with_it(tmp_path, monkeypatch):
    from .imagegen import make_folder

    make_folder(tmp_path / "data", classes=("a", "b"), per_class=4, size=16)
    cfg = {"model": {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 2, "activation": "softmax"}}]},
           "data": {"train": str(tmp_path / "data"), "val_split": 0.0, "resize": "imagenet",
                    "cache_dir": str(tmp_path / "cache")},
           "train": {"epochs": 1, "batch_size": 4}, "output": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = train(tmp_path / "c.yaml", reporter=QuietReporter())
    loaded = load(result.output / "last.npz")
    assert loaded.resize == "imagenet" and loaded.meta["preprocessing"]["resize_rule"].startswith("centre crop of 224/256")
    image = next((tmp_path / "data" / "a").iterdir())
    seen = []
    real = predict_module.decode_files
    monkeypatch.setattr(predict_module, "decode_files",
                        lambda files, shape, resize, *a: seen.append(resize) or real(files, shape, resize, *a))
    (row,) = predict_module.predict(result.output / "last.npz", [str(image)], top_k=1)
    assert seen == ["imagenet"] and row["top"][0]["class"] in ("a", "b")
