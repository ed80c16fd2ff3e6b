"""Augmentations: PIL parity of every image operation, the AutoAugment/RandAugment tables,
and every registered augmentation eagerly and inside tf.data.Dataset.map with a fixed seed."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from official import config as config_lib
from official.data import augment

# Every augmentation parameter at its flag's default (--config.data.*).
PARAMETERS = {name: getattr(config_lib.DataConfig(), name) for name in augment.parameter_names()}


def _photo(height=29, width=37, seed=0) -> np.ndarray:
    """Smooth colour fields plus noise: histograms and edges like a real photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.int32)
    return np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)


def _affine_reference(pil, matrix):
    return pil.transform(pil.size, Image.AFFINE, matrix, fillcolor=(augment.FILL,) * 3)


# (name, our op on a tensor, PIL's on an image): the reference every AutoAugment/RandAugment
# implementation starts from (timm calls these PIL functions directly).
PIL_PAIRS = [
    ("auto_contrast", augment.auto_contrast, ImageOps.autocontrast),
    ("equalize", augment.equalize, ImageOps.equalize),
    ("invert", augment.invert, ImageOps.invert),
    ("solarize", lambda t: augment.solarize(t, 100), lambda p: ImageOps.solarize(p, 100)),
    ("posterize", lambda t: augment.posterize(t, 5), lambda p: ImageOps.posterize(p, 5)),
    ("translate_x", lambda t: augment.translate_x(t, -7.5), None),
    ("translate_y", lambda t: augment.translate_y(t, 5.0), None),
    ("shear_x", lambda t: augment.shear_x(t, 0.17), None),
    ("shear_y", lambda t: augment.shear_y(t, -0.23), None),
]
for _factor in (0.1, 0.6, 1.7):
    for _name, _ours, _enhancer in (
        ("color", augment.color, ImageEnhance.Color),
        ("contrast", augment.contrast, ImageEnhance.Contrast),
        ("brightness", augment.brightness, ImageEnhance.Brightness),
        ("sharpness", augment.sharpness, ImageEnhance.Sharpness),
    ):
        PIL_PAIRS.append(
            (
                f"{_name}_{_factor}",
                lambda t, o=_ours, f=_factor: o(t, f),
                lambda p, e=_enhancer, f=_factor: e(p).enhance(f),
            )
        )
_AFFINE = {
    "translate_x": (1, 0, -7.5, 0, 1, 0),
    "translate_y": (1, 0, 0, 0, 1, 5.0),
    "shear_x": (1, 0.17, 0, 0, 1, 0),
    "shear_y": (1, 0, 0, -0.23, 1, 0),
}


@pytest.mark.parametrize("name, ours, reference", PIL_PAIRS, ids=[p[0] for p in PIL_PAIRS])
def test_image_op_matches_pil_exactly(name, ours, reference):
    for seed in range(2):
        image = _photo(29 + seed, 37 - seed, seed)
        pil = Image.fromarray(image)
        expected = _affine_reference(pil, _AFFINE[name]) if name in _AFFINE else reference(pil)
        out = ours(tf.constant(image))
        assert out.dtype == tf.uint8 and out.shape == image.shape
        np.testing.assert_array_equal(out.numpy(), np.asarray(expected))


def test_rotate_matches_pil_up_to_rounding_ties():
    image = _photo(30, 40)
    pil = Image.fromarray(image)
    for degrees in (17.0, -25.0, 90.0, 30.0 * 8 / 9):
        out = augment.rotate(tf.constant(image), degrees).numpy()
        expected = np.asarray(pil.rotate(degrees, fillcolor=(augment.FILL,) * 3))
        # Where the sample point falls exactly between two pixels PIL's accumulated float
        # error decides; everything else is identical.
        assert np.mean(np.any(out != expected, axis=-1)) < 0.01


def test_autoaugment_policy_is_the_papers_imagenet_policy():
    policy = augment.AUTOAUGMENT_IMAGENET_POLICY
    assert len(policy) == 25 and all(len(sub_policy) == 2 for sub_policy in policy)
    ops = {name for sub_policy in policy for name, _, _ in sub_policy}
    assert ops == {
        "Posterize", "Rotate", "Solarize", "AutoContrast", "Equalize", "Color", "Contrast",
        "Invert", "Sharpness", "ShearX",
    }  # fmt: skip
    assert all(0 <= p <= 1 and 0 <= m <= 9 for s in policy for _, p, m in s)
    # Spot checks against arXiv 1805.09501's table (first, a middle and the last row).
    assert policy[0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))
    assert policy[14] == (("Color", 0.6, 4), ("Contrast", 1.0, 8))
    assert policy[24] == (("Equalize", 0.8, 8), ("Equalize", 0.6, 3))


def test_randaugment_ops_are_the_papers_fourteen():
    assert set(augment.RANDAUGMENT_OPS) == {
        "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
        "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
    }  # fmt: skip


def test_magnitudes_map_onto_the_papers_ranges():
    image = tf.constant(_photo())
    negate = tf.constant(False)
    # AutoAugment magnitude m is m/9 of the range: Rotate 9 → 30°, Posterize 8 → 7 bits,
    # Solarize 5 → threshold 142, Color 0 → factor 0.1.
    np.testing.assert_array_equal(
        augment.apply_op("Rotate", image, 9 / 9, negate), augment.rotate(image, 30.0)
    )
    np.testing.assert_array_equal(
        augment.apply_op("Posterize", image, 8 / 9, negate), augment.posterize(image, 7)
    )
    np.testing.assert_array_equal(
        augment.apply_op("Solarize", image, 5 / 9, negate), augment.solarize(image, 142)
    )
    np.testing.assert_array_equal(
        augment.apply_op("Color", image, 0.0, negate), augment.color(image, 0.1)
    )
    # A negated shear is the mirror shear; translation is a fraction of the side (0.45 max).
    np.testing.assert_array_equal(
        augment.apply_op("ShearX", image, 0.5, tf.constant(True)), augment.shear_x(image, -0.15)
    )
    width = image.shape[1]
    np.testing.assert_array_equal(
        augment.apply_op("TranslateX", image, 1.0, negate),
        augment.translate_x(image, 0.45 * width),
    )
    # RandAugment's M > 10 extrapolates, with arguments clipped to what the op accepts.
    np.testing.assert_array_equal(augment.apply_op("Posterize", image, 2.8, negate), image)


def test_cutout_greys_a_clipped_square():
    image = tf.fill([40, 40, 3], tf.constant(7, tf.uint8))
    sizes = []
    for i in range(20):
        out = augment.cutout(image, tf.constant([3, i]), cutout_fraction=0.5).numpy()
        grey = np.all(out == augment.FILL, axis=-1)
        assert set(np.unique(out)) <= {7, augment.FILL}
        rows, cols = np.nonzero(grey)
        # A 20x20 square around a uniform centre, clipped at the border.
        assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
        sizes.append(grey.sum())
    assert max(sizes) == 400 and min(sizes) < 400  # whole inside, or clipped


def test_random_erasing_area_aspect_and_probability():
    image = tf.zeros([60, 80, 3], tf.uint8)
    erased = []
    for i in range(200):
        out = augment.random_erasing(image, tf.constant([5, i]), erasing_probability=0.5).numpy()
        changed = np.any(out != 0, axis=-1)
        if changed.any():
            rows, cols = np.nonzero(changed)
            h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert 0.015 <= h * w / (60 * 80) <= 0.42  # area 2%-40% (rounded)
            assert 0.25 <= h / w <= 1 / 0.25  # aspect 0.3-3.3 (rounded)
            erased.append(1)
        else:
            erased.append(0)
    assert 0.38 <= np.mean(erased) <= 0.62  # p = 0.5
    untouched = augment.random_erasing(image, tf.constant([5, 1]), erasing_probability=0.0)
    assert not np.any(untouched.numpy())


@pytest.mark.parametrize("name", [n for n in augment.names() if n != "augmix"])
def test_per_image_augmentation_eager_equals_map_and_is_reproducible(name):
    images = np.stack([_photo(32, 32, seed) for seed in range(4)])
    seeds = np.array([[11, i] for i in range(4)], np.int64)
    augmenter = augment.build([name], {**PARAMETERS, "randaugment_magnitude": 15}, seed=0)
    eager = np.stack([augmenter.apply_image(tf.constant(x), s) for x, s in zip(images, seeds)])
    ds = tf.data.Dataset.from_tensor_slices((images, seeds))
    ds = ds.map(augmenter.apply_image, num_parallel_calls=4, deterministic=True)
    mapped = np.stack(list(ds.as_numpy_iterator()))
    assert mapped.dtype == np.uint8 and mapped.shape == images.shape
    np.testing.assert_array_equal(eager, mapped)
    np.testing.assert_array_equal(mapped, np.stack(list(ds.as_numpy_iterator())))
    if name != "random_erasing":  # p = 0.5: some images are left alone by design
        assert np.mean(np.any(mapped != images, axis=(1, 2, 3))) >= 0.5


def test_augmix_keras_layer_in_map_is_reproducible_with_a_fixed_seed():
    import keras

    images = np.stack([_photo(32, 32, seed) for seed in range(8)]).reshape(2, 4, 32, 32, 3)

    def run():
        keras.utils.set_random_seed(3)
        augmenter = augment.build(["augmix"], {}, seed=3)
        ds = tf.data.Dataset.from_tensor_slices(images).map(augmenter.apply_batch)
        return np.stack(list(ds.as_numpy_iterator()))

    first, second = run(), run()
    assert first.dtype == np.uint8 and first.shape == images.shape
    np.testing.assert_array_equal(first, second)
    assert np.any(first != images)


def test_build_orders_names_and_rejects_unknown_ones():
    augmenter = augment.build(["random_erasing,randaugment", "augmix"], PARAMETERS, seed=0)
    assert [a.name for a in augmenter.per_image] == ["randaugment", "random_erasing"]
    assert [a.name for a in augmenter.per_batch] == ["augmix"] and augmenter.stateful
    assert not augment.build([], {}, seed=0)
    with pytest.raises(ValueError, match="unknown augmentation 'randaug'.*randaugment"):
        augment.build(["randaug"], PARAMETERS, seed=0)
    with pytest.raises(ValueError, match="'cutout' needs cutout_fraction"):
        augment.build(["cutout"], {}, seed=0)
    assert augment.parameter_names() == (
        "randaugment_num_ops",
        "randaugment_magnitude",
        "rotation_degrees",
        "cutout_fraction",
        "erasing_probability",
    )


def test_autoaugment_applies_steps_with_the_policys_probabilities():
    # An image that every operation of the policy changes (values 10..250, not equalized):
    # it stays unchanged exactly when neither step of the drawn sub-policy fires.
    image = (10 + _photo(16, 16).astype(np.int32) * 240 // 255).astype(np.uint8)
    count = 600
    seeds = np.array([[7, i] for i in range(count)], np.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda seed: augment.autoaugment(tf.constant(image), seed), num_parallel_calls=4
    )
    unchanged = np.mean([np.array_equal(out, image) for out in ds.as_numpy_iterator()])
    expected = np.mean([(1 - a[1]) * (1 - b[1]) for a, b in augment.AUTOAUGMENT_IMAGENET_POLICY])
    tolerance = 4 * np.sqrt(expected * (1 - expected) / count)  # 4 binomial standard errors
    assert abs(unchanged - expected) < tolerance, (unchanged, expected)
