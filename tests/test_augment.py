"""Augmentation: the compiled kernels against their slow twins, each key on a synthetic image with
a known answer, the epoch's draws, and that nothing of it reaches validation or prediction."""

import dataclasses
import math

import numpy as np
import pytest

from cnncli.config import Augment, Cutout, RandomResizedCrop
from cnncli.data.augment import apply, draw, matrices
from cnncli.data.batches import Batches
from cnncli.kernels.augment import augment_batch, mix_batch, prepare_batch
from cnncli.engine.mixed import Mixed

from . import naive

S = 32                      # image side of the known-answer tests
C = (S - 1) / 2             # the centre, in cell coordinates


def warp(images, **keys):
    """uint8 images through the geometric keys given as fixed values -> float64 pixel values
    (mean 0, std 1/255: out = the pixel), via the plan's matrices and the kernel."""
    n = len(images)
    p = {k: np.full(n, v, np.float64) if np.ndim(v) == 0 else np.tile(v, (n, 1)) for k, v in keys.items()}
    m = matrices(p, slice(None), n, S, S)
    return augment_batch(images, [0.0] * images.shape[3], [1 / 255] * images.shape[3], m).astype(np.float64)


def canvas(fill):
    """(1, S, S, 1) uint8 with 255 where fill(y, x) holds, (y, x) the cell centre from the image centre."""
    y, x = np.mgrid[0:S, 0:S] - C
    return np.where(fill(y, x), 255, 0).astype(np.uint8)[None, :, :, None]


# --- the kernels against their twins ------------------------------------------------------------

@pytest.mark.parametrize("c", [1, 3])
def test_augment_kernel_matches_its_slow_twin(rng, c):
    n, h, w = 4, 9, 7
    src = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
    mean, std = rng.uniform(0.2, 0.6, c), rng.uniform(0.1, 0.4, c)
    aug = Augment(flip=True, crop_padding=2, rotate=40.0, scale=[0.7, 1.3], translate=0.2, shear=15.0,
                  random_resized_crop=RandomResizedCrop([0.4, 1.0], [0.7, 1.4]), brightness=0.3, contrast=0.5,
                  saturation=0.8, cutout=Cutout(3, 2))
    p = draw(aug, rng, n, h, w)
    p["dy"][0] = p["dx"][0] = 0           # image 0 an integer map (the exact one-cell path) ...
    for k in ("angle", "zoom", "tx", "ty", "shear", "crop"):
        p[k] = p[k].copy()
    p["angle"][0], p["zoom"][0], p["tx"][0], p["ty"][0], p["shear"][0] = 0, 1, 0, 0, 0
    p["crop"][0] = [0, 0, h, w]
    m = matrices(p, slice(None), n, h, w)
    assert np.array_equal(m[0], [[1, 0, 0], [0, -1, w - 1]] if p["flip"][0] else [[1, 0, 0], [0, 1, 0]])
    got = augment_batch(src, mean, std, m, p["gain"], p["contrast"], p["saturation"], p["cutout"], 3)
    for b in range(n):     # ... the others bilinear
        want = naive.augment_image(src[b], m[b].astype(np.float32).astype(np.float64), mean, std, p["gain"][b],
                                   p["contrast"][b], p["saturation"][b], p["cutout"][b], 3)
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=2e-4, err_msg=f"image {b}")


@pytest.mark.parametrize("c", [1, 3])
def test_axis_aligned_maps_match_the_slow_twin(rng, c):
    """Flips, scaling, shifts and resized crops without rotation or shear: the kernel finds each
    row's and column's source cell once (its axis-aligned path), zoomed out past the edges too."""
    n, h, w = 6, 11, 8
    src = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
    mean, std = rng.uniform(0.2, 0.6, c), rng.uniform(0.1, 0.4, c)
    aug = Augment(flip=True, vflip=True, scale=[0.5, 1.5], translate=0.3,
                  random_resized_crop=RandomResizedCrop([0.3, 1.0], [0.6, 1.6]), brightness=0.3, contrast=0.5,
                  saturation=0.8)
    p = draw(aug, rng, n, h, w)
    m = matrices(p, slice(None), n, h, w)
    assert np.all(m[:, 0, 1] == 0) and np.all(m[:, 1, 0] == 0) and not np.all(m == np.round(m), axis=(1, 2)).any()
    got = augment_batch(src, mean, std, m, p["gain"], p["contrast"], p["saturation"])
    for b in range(n):
        want = naive.augment_image(src[b], m[b].astype(np.float32).astype(np.float64), mean, std, p["gain"][b],
                                   p["contrast"][b], p["saturation"][b], np.zeros((0, 2), int), 0)
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=2e-4, err_msg=f"image {b}")


# sha256 (first 16 hex digits) of augment_batch's output for each case below, as the kernel gave
# them before session 14 rewrote its pixel loop (9f89efa): the rewrite was to change no bit. The
# same on AVX-512, NUMBA_CPU_NAME=haswell and =generic (no fastmath: each operation IEEE-rounded).
BITS_BEFORE_THE_REWRITE = ["c895e9c649350455", "a01a107e08a7d25f", "89ae2292ed48f540", "ef3abcbe3676efd2",
                           "fce9245c6b6bbf5b"]


def test_the_pixel_loop_gives_the_bits_it_gave_before_its_rewrite():
    import hashlib

    cases = [(3, 32, 32, Augment(flip=True, random_resized_crop=RandomResizedCrop([0.3, 1.0], [0.6, 1.6]))),
             (1, 7, 11, Augment(flip=True, vflip=True, contrast=0.5,
                                random_resized_crop=RandomResizedCrop([0.1, 1.0], [0.5, 2.0]))),
             (1, 12, 12, Augment(rotate=30.0, scale=[0.7, 1.3], brightness=0.3, contrast=0.5)),
             (3, 9, 14, Augment(vflip=True, rotate=20.0, shear=10.0, translate=0.2, brightness=0.2, contrast=0.4,
                                saturation=0.6, cutout=Cutout(4, 2))),
             (3, 10, 10, Augment(flip=True, crop_padding=3))]
    got = []
    for c, h, w, aug in cases:
        r = np.random.default_rng(7)
        src = r.integers(0, 256, (5, h, w, c)).astype(np.uint8)
        p = draw(aug, r, 5, h, w)
        x = augment_batch(src, [0.4] * c, [0.25] * c, matrices(p, slice(None), 5, h, w), p.get("gain"),
                          p.get("contrast"), p.get("saturation"), p.get("cutout"), aug.cutout.size)
        got.append(hashlib.sha256(x.tobytes()).hexdigest()[:16])
    assert got == BITS_BEFORE_THE_REWRITE


def test_augmentation_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        augment_batch(np.zeros((1, 4, 4, 2), np.uint8), [0.5] * 2, [0.2] * 2, np.array([[[1.0, 0, 0.5], [0, 1, 0]]]))


def test_mix_kernel_matches_its_slow_twin(rng):
    x = rng.standard_normal((5, 6, 7, 3)).astype(np.float32)
    partner, lam = np.array([4, 3, 2, 1, 0]), rng.uniform(0, 1, 5)
    box = np.array([[-1] * 4, [1, 4, 2, 7], [-1] * 4, [0, 6, 0, 1], [2, 2, 3, 5]])
    np.testing.assert_allclose(mix_batch(x, partner, lam, box), naive.mix(x, partner, lam.astype(np.float32), box),
                               rtol=1e-6, atol=1e-6)


def test_no_augmentation_is_plain_normalisation_bit_for_bit(rng):
    src = rng.integers(0, 256, (3, 5, 4, 3)).astype(np.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    scale = (1.0 / (255.0 * np.asarray(std))).astype(np.float32)
    shift = (-np.asarray(mean) / np.asarray(std)).astype(np.float32)
    np.testing.assert_array_equal(prepare_batch(src, mean, std), src.astype(np.float32) * scale + shift)


@pytest.mark.parametrize("c", [1, 3])
def test_the_normalise_only_path_equals_the_general_kernel_bit_for_bit(rng, c):
    """No geometry, contrast, saturation or cutout: augment_batch takes its short loop (_normalise);
    an explicit identity matrix takes _augment. With and without a brightness gain, the same bits."""
    src = rng.integers(0, 256, (4, 7, 5, c)).astype(np.uint8)
    mean, std = rng.uniform(0.2, 0.7, c), rng.uniform(0.1, 0.4, c)
    identity = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (4, 1, 1))
    for gain in (None, rng.uniform(0.6, 1.4, 4)):
        fast = augment_batch(src, mean, std, gain=gain)
        general = augment_batch(src, mean, std, identity, gain)
        np.testing.assert_array_equal(fast, general)
        assert fast.dtype == np.float32 and fast.shape == src.shape


# --- each key, with a known answer ----------------------------------------------------------------

def test_rotate_moves_a_squares_corners_onto_the_axes():
    square = canvas(lambda y, x: (abs(y) < 8) & (abs(x) < 8))          # 16 x 16, corners at 8 sqrt 2
    out = warp(square, angle=45.0)[0, :, :, 0] / 255
    rows, cols = np.nonzero(out.max(axis=1) > 0.5)[0], np.nonzero(out.max(axis=0) > 0.5)[0]
    # the 45-degree diamond reaches 8 sqrt 2 = 11.3 from the centre along both axes
    assert rows.max() - C == pytest.approx(8 * math.sqrt(2), abs=1.0) and C - rows.min() == pytest.approx(8 * math.sqrt(2), abs=1.0)
    assert cols.max() - C == pytest.approx(8 * math.sqrt(2), abs=1.0)
    assert out.sum() == pytest.approx(256, rel=0.03)                    # rotation keeps the area
    assert out[3, 3] == 0 and out[int(C), int(C)] == pytest.approx(1)                  # the old corner is empty now
    # counter-clockwise as seen: a mark right of the centre goes to the top at +90 degrees
    mark = canvas(lambda y, x: (abs(y) < 2) & (x > 9) & (x < 13))
    up = warp(mark, angle=90.0)[0, :, :, 0]
    ys, xs = np.nonzero(up > 127)
    assert ys.mean() == pytest.approx(C - 11, abs=0.6) and xs.mean() == pytest.approx(C, abs=0.6)


def test_scale_makes_a_disc_of_the_scaled_radius():
    disc = canvas(lambda y, x: y * y + x * x <= 6.0 ** 2)
    for zoom in (0.5, 1.5, 2.0):
        area = warp(disc, zoom=zoom)[0].sum() / 255
        assert math.sqrt(area / math.pi) == pytest.approx(6.0 * zoom, rel=0.04), zoom


def test_translate_moves_by_the_fraction_of_the_side():
    dot = canvas(lambda y, x: (abs(y) < 2) & (abs(x) < 2))
    out = warp(dot, tx=0.25, ty=-0.125)[0, :, :, 0]
    ys, xs = np.nonzero(out > 127)
    assert xs.mean() - C == pytest.approx(8.0) and ys.mean() - C == pytest.approx(-4.0)
    np.testing.assert_array_equal(out, np.roll(np.roll(dot[0, :, :, 0], 8, axis=1), -4, axis=0))


def test_shear_slants_a_vertical_line_by_its_tangent():
    line = canvas(lambda y, x: abs(x) < 1)
    out = warp(line, shear=30.0)[0, :, :, 0]
    for i in (4, 10, 20, 27):          # x = tan(30) y on each row
        j = (out[i] * np.arange(S)).sum() / out[i].sum()
        assert j - C == pytest.approx(math.tan(math.radians(30)) * (i - C), abs=0.15), i


def test_flips_and_shifts_are_exact(rng):
    img = rng.integers(0, 256, (1, S, S, 3)).astype(np.uint8)
    np.testing.assert_array_equal(warp(img, vflip=1.0)[0], img[0, ::-1])
    np.testing.assert_array_equal(warp(img, flip=1.0)[0], img[0, :, ::-1])
    shifted = warp(img, dy=3.0, dx=-2.0)[0]                        # out[i, j] = src[i + 3, j - 2]
    np.testing.assert_array_equal(shifted[:-3, 2:], img[0, 3:, :-2])
    assert (shifted[-3:] == 0).all() and (shifted[:, :2] == 0).all()


def test_random_resized_crop_fills_the_input_with_the_crop():
    quadrant = canvas(lambda y, x: (y < 0) & (x < 0))                 # the top-left quarter is white
    out = warp(quadrant, crop=[0.0, 0.0, S / 2, S / 2])[0, :, :, 0]  # crop it: all white
    assert (out[:-1, :-1] == 255).all()
    out = warp(quadrant, crop=[0.0, 0.0, S / 2, S])[0, :-1, :, 0]    # the top half: the left half is white
    assert (out[:, :S // 2 - 1] == 255).all() and (out[:, S // 2 + 1:] == 0).all()


def test_cutout_erases_count_squares_of_its_size():
    img = np.full((2, S, S, 1), 200, np.uint8)
    boxes = np.array([[[2, 3], [20, 20]], [[-3, -3], [30, 10]]])     # the second image's hang over the edge
    out = augment_batch(img, [0.0], [1.0], boxes=boxes, size=6)
    assert (out[0] == 0).sum() == 2 * 36 and (out[0, 2:8, 3:9] == 0).all()
    assert (out[1] == 0).sum() == 3 * 3 + 2 * 6


def test_brightness_multiplies_the_pixels():
    img = np.array([0, 100, 200], np.uint8).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(augment_batch(img, [0.0], [1 / 255], gain=[1.5])[0, 0, :, 0], [0, 150, 300], rtol=1e-6)


def test_contrast_and_saturation_blend_with_gray(rng):
    img = rng.integers(40, 200, (1, 8, 8, 3)).astype(np.uint8)
    gray = img[0].astype(np.float64) @ [0.299, 0.587, 0.114]
    flat = augment_batch(img, [0.0] * 3, [1 / 255] * 3, contrast=[0.0])[0]
    np.testing.assert_allclose(flat, gray.mean(), rtol=1e-5)             # contrast 0: the mean gray level
    half = augment_batch(img, [0.0] * 3, [1 / 255] * 3, contrast=[0.5])[0]
    np.testing.assert_allclose(half - gray.mean(), (img[0] - gray.mean()) * 0.5, rtol=1e-4, atol=1e-3)
    no_colour = augment_batch(img, [0.0] * 3, [1 / 255] * 3, saturation=[0.0])[0]
    np.testing.assert_allclose(no_colour, np.repeat(gray[..., None], 3, axis=2), rtol=1e-5)
    one = img[..., :1]                                               # grayscale: saturation does nothing
    np.testing.assert_array_equal(augment_batch(one, [0.0], [1.0], saturation=[0.0]), augment_batch(one, [0.0], [1.0]))


def test_fill_is_the_mean_whatever_the_colour_jitter():
    img = np.full((1, S, S, 3), 90, np.uint8)
    m = matrices({"tx": np.array([0.5])}, slice(None), 1, S, S)      # half the image shifted in from outside
    out = augment_batch(img, [0.5] * 3, [0.2] * 3, m, gain=[1.3], contrast=[0.6], saturation=[1.4])
    assert (out[0, :, :S // 2 - 1] == 0).all() and (out[0, :, S // 2 + 1:] != 0).all()


def test_mixup_blends_pairs_and_their_label_shares_sum_to_one(rng):
    n = 6
    src = rng.integers(0, 256, (n, 5, 5, 3)).astype(np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    p = draw(Augment(mixup=0.4), rng, n, 5, 5)
    x, y = apply(src, labels, [0.0] * 3, [1 / 255] * 3, p, slice(None), 0)
    assert isinstance(y, Mixed) and len(y) == n
    np.testing.assert_array_equal(y.second, labels[::-1])                # image i blends with image n-1-i
    np.testing.assert_allclose(y.soft(3).sum(axis=1), 1.0)
    for i in range(n):
        want = y.weight[i] * src[i].astype(np.float64) + (1 - y.weight[i]) * src[n - 1 - i]
        np.testing.assert_allclose(x[i], want, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(y.dominant(), np.where(y.weight >= 0.5, labels, labels[::-1]))


def test_cutmix_pastes_a_box_whose_area_sets_the_share(rng):
    n = 4
    src = (np.arange(n, dtype=np.uint8)[:, None, None, None] * 60 + 10).repeat(S, 1).repeat(S, 2)
    p = draw(Augment(cutmix=1.0), rng, n, S, S)
    x, y = apply(src, np.arange(n), [0.0], [1 / 255], p, slice(None), 0)
    for i in range(n):
        from_partner = (np.round(x[i, :, :, 0]) == src[n - 1 - i, 0, 0, 0]).mean()
        assert y.weight[i] == pytest.approx(1 - from_partner)
        y0, y1, x0, x1 = p["box"][i]
        assert from_partner * S * S == (y1 - y0) * (x1 - x0)


# --- the draws ---------------------------------------------------------------------------------------

EVERY = Augment(flip=True, vflip=True, crop_padding=2, rotate=20.0, scale=[0.8, 1.2], translate=0.1, shear=10.0,
                random_resized_crop=RandomResizedCrop([0.5, 1.0], [0.75, 1.33]), brightness=0.2, contrast=0.3,
                saturation=0.3, cutout=Cutout(4, 2), mixup=0.2, cutmix=1.0)


def test_draws_depend_only_on_the_generator_and_keep_the_original_stream(rng):
    a, b = draw(EVERY, np.random.default_rng([3, 1, 0]), 10, 8, 8), draw(EVERY, np.random.default_rng([3, 1, 0]), 10, 8, 8)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert all(len(v) == 10 for v in a.values())
    # flip, shift and brightness alone draw exactly what they drew before the other keys existed
    old = Augment(flip=True, crop_padding=1, brightness=0.1)
    g = np.random.default_rng(5)
    want = {"flip": g.random(10) < 0.5, "dy": g.integers(-1, 2, 10), "dx": g.integers(-1, 2, 10),
            "gain": g.uniform(0.9, 1.1, 10)}
    got = draw(old, np.random.default_rng(5), 10, 8, 8)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


def test_a_batch_depends_only_on_seed_epoch_and_index(rng):
    images = rng.integers(0, 256, (23, 8, 8, 3)).astype(np.uint8)
    b = Batches(images, np.arange(23) % 3, np.arange(23), [0.5] * 3, [0.25] * 3, 5, EVERY)
    whole = list(b.epoch(np.random.default_rng([1, 2, 0])))
    later = list(b.epoch(np.random.default_rng([1, 2, 0]), start=3))
    for (x1, y1), (x2, y2) in zip(whole[3:], later):
        np.testing.assert_array_equal(x1, x2)
        assert np.array_equal(y1.weight, y2.weight) and np.array_equal(y1.second, y2.second)


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(Augment)])
def test_no_key_reaches_validation_or_prediction(tmp_path, key, rng):
    from cnncli import config
    from cnncli.data.dataset import prepare

    from .imagegen import make_folder

    one = Augment(**{key: getattr(EVERY, key)})
    images = rng.integers(0, 256, (7, 8, 8, 3)).astype(np.uint8)
    b = Batches(images, np.arange(7) % 2, np.arange(7), [0.5] * 3, [0.25] * 3, 4, one)
    x = np.concatenate([x for x, _ in b.epoch(None)])    # what validate() reads: no generator, no augmentation
    np.testing.assert_array_equal(x, prepare_batch(images, [0.5] * 3, [0.25] * 3))
    if key != "flip":
        return
    make_folder(tmp_path / "data", per_class=4)
    raw = {"model": {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 3, "activation": "softmax"}}]},
           "data": {"train": str(tmp_path / "data"), "val_split": 0.5, "cache_dir": str(tmp_path / "cache"),
                    "augment": config.section_dict(EVERY)}}
    data = prepare(config.parse_run(raw, "t.yaml", tmp_path))
    assert data.train.augment == EVERY and data.val.augment is None
