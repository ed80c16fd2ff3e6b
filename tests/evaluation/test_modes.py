"""Every evaluation mode against a hand-computed average over its crops, scales and flips."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import preprocess, sources
from official.evaluation import cam, dense, ensemble, modes
from official.models import heads, registry


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


GEOMETRY = preprocess.Geometry(image_size=32, crop_fraction=0.875, interpolation="bilinear")
SIZES = [(40, 52), (48, 36), (37, 45)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes, one training and one PNG validation image each (sizes differ)."""
    root = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(0)
    for label, (name, size) in enumerate(zip("abc", SIZES)):
        for split in ("train", "validation"):
            (root / split / name).mkdir(parents=True)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            pixels[: size[0] // 2] //= 2 + label  # Not mirror-symmetric, different per class.
            (root / split / name / "x.png").write_bytes(encode(pixels, "PNG"))
    return sources.open_source(f"folder:{root}")


@pytest.fixture(scope="module")
def models():
    """A tiny ResNet at 32 px and the same weights at any input size (an independent path)."""
    spec = registry.get("resnet18")
    keras_utils = pytest.importorskip("keras").utils
    keras_utils.set_random_seed(1)
    fixed = spec.build(num_classes=3, image_size=32, width_multiplier=0.125)
    any_size = spec.build(num_classes=3, image_size=None, width_multiplier=0.125)
    any_size.set_weights(fixed.get_weights())
    return fixed, any_size


def _validation_pixels(source) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in source.splits["validation"].paths]


def _resize_shorter(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    factor = side / min(height, width)
    size = (round(height * factor), round(width * factor))
    resized = tf.image.resize(image, size, method="bilinear").numpy()  # as preprocess.resize_uint8
    return np.floor(resized + 0.5).astype(np.uint8)


def _softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _posteriors(model, images) -> np.ndarray:
    return _softmax(model(np.asarray(images, np.float32), training=False))


def test_ten_crop_is_the_mean_over_corners_center_and_mirrors(folder, models):
    fixed, _ = models
    probabilities, labels = modes.multi_crop(
        fixed, folder, "validation", batch_size=64, geometry=GEOMETRY, kind="ten"
    )
    assert labels.tolist() == [0, 1, 2]
    for row, image in zip(probabilities, _validation_pixels(folder)):
        scaled = _resize_shorter(image, 37)  # S = round(32 / 0.875)
        h, w = scaled.shape[:2]
        origins = [(0, 0), (0, w - 32), (h - 32, 0), (h - 32, w - 32)]
        origins.append(((h - 32 + 1) // 2, (w - 32 + 1) // 2))
        patches = [scaled[y : y + 32, x : x + 32] for y, x in origins]
        patches += [p[:, ::-1] for p in patches]
        np.testing.assert_allclose(row, _posteriors(fixed, patches).mean(0), atol=1e-5)


def test_vgg_grid_is_the_mean_over_5x5_crops_flips_and_scales(folder, models):
    fixed, _ = models
    scales = (32, 40)
    probabilities, _ = modes.multi_crop(
        fixed,
        folder,
        "validation",
        batch_size=100,
        geometry=GEOMETRY,
        kind="grid",
        scales=scales,
    )
    for row, image in zip(probabilities, _validation_pixels(folder)):
        patches = []
        for scale in scales:
            scaled = _resize_shorter(image, scale)
            tops = np.round(np.linspace(0, scaled.shape[0] - 32, 5)).astype(int)
            lefts = np.round(np.linspace(0, scaled.shape[1] - 32, 5)).astype(int)
            grid = [scaled[y : y + 32, x : x + 32] for y in tops for x in lefts]
            patches += grid + [p[:, ::-1] for p in grid]
        assert len(patches) == 100
        np.testing.assert_allclose(row, _posteriors(fixed, patches).mean(0), atol=1e-5)


@pytest.mark.parametrize("scales", [(37,), (32, 48, 64)])
def test_dense_and_multi_scale_average_the_whole_image_and_its_mirror(folder, models, scales):
    fixed, any_size = models
    probabilities, labels = modes.dense_eval(
        fixed, folder, "validation", geometry=GEOMETRY, scales=scales
    )
    assert labels.tolist() == [0, 1, 2]
    for row, image in zip(probabilities, _validation_pixels(folder)):
        per_scale = []
        for scale in scales:
            scaled = _resize_shorter(image, scale)
            # The whole image, not a crop: the any-size model's own logits at that size.
            per_scale.append(_posteriors(any_size, np.stack([scaled, scaled[:, ::-1]])))
        np.testing.assert_allclose(row, np.concatenate(per_scale).mean(0), atol=1e-5)


def test_dense_form_equals_the_fc_form_on_a_224_input():
    spec = registry.get("resnet18")
    model = spec.build(num_classes=7, image_size=224, width_multiplier=0.125, dropout=0.2)
    images = np.random.default_rng(3).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    score_map = dense.score_map_function(model)(images).numpy()
    assert score_map.shape == (2, 7, 7, 7)  # 224 / 32 locations × 7 classes
    logits = model(images, training=False).numpy()
    np.testing.assert_allclose(score_map.mean(axis=(1, 2)), logits, rtol=1e-5, atol=1e-5)


def test_dense_needs_a_fully_convolutional_form():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x), name="fc_head")
    assert heads.gap_classifier(model) is None
    with pytest.raises(dense.DenseEvaluationError, match="fc_head: dense evaluation needs"):
        dense.score_map_function(model)


def test_ensemble_average_checks_the_members_saw_the_same_examples():
    a, b = np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([[0.6, 0.4], [0.0, 1.0]])
    labels = np.array([0, 1])
    np.testing.assert_allclose(ensemble.average([a, b], [labels, labels]), [[0.7, 0.3], [0.2, 0.8]])
    with pytest.raises(ensemble.EnsembleError, match="member 1 saw different examples"):
        ensemble.average([a, b], [labels, labels[::-1]])


def test_vgg_dense_uses_its_fully_convolutional_form():
    """VGG's FC head: dense evaluation through the family's conversion (arXiv 1409.1556 §3.2)."""
    vgg = pytest.importorskip("official.models.vgg")
    keras = pytest.importorskip("keras")
    spec = registry.get("vgg11")
    model = spec.build(num_classes=4, image_size=224, width_multiplier=1 / 16)
    assert heads.gap_classifier(model) is None
    converter = dense.family_converter(spec.builder)
    assert converter is vgg.to_fully_convolutional
    score_map = dense.score_map_function(model, converter)
    images = np.random.default_rng(5).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    # At 224 the score map is one location and equals the FC form.
    at_224 = score_map(images).numpy()
    assert at_224.shape == (2, 1, 1, 4)
    np.testing.assert_allclose(at_224[:, 0, 0], model(images, training=False), atol=1e-4)
    # On a larger image: the FC head applied to every 7×7 window of the last feature map
    # (stride 32 px in the image), the scores averaged, then the same for the mirror image.
    image = np.random.default_rng(6).integers(0, 256, (256, 288, 3), dtype=np.uint8)
    trunk = dense.any_size(keras.Model(model.inputs, model.get_layer("block5_pool").output))

    def hand_logits(picture):
        feature_map = trunk(picture[None].astype(np.float32)).numpy()[0]
        assert feature_map.shape[:2] == (8, 9)
        scores = []
        for y in range(feature_map.shape[0] - 6):
            for x in range(feature_map.shape[1] - 6):
                h = feature_map[y : y + 7, x : x + 7].reshape(1, -1)
                for name in ("fc1", "fc2"):
                    h = np.maximum(model.get_layer(name)(h).numpy(), 0)
                scores.append(model.get_layer("predictions")(h).numpy()[0])
        assert len(scores) == 2 * 3
        return np.mean(scores, axis=0)

    expected = (_softmax(hand_logits(image)) + _softmax(hand_logits(image[:, ::-1]))) / 2
    assert score_map(image[None].astype(np.float32)).shape == (1, 2, 3, 4)
    got = dense.dense_probabilities(score_map, (tf.constant(image),), flip=True).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_tfrecord_source_gives_the_posteriors_of_its_folder(tmp_path, models):
    """Converted records (RGB JPEGs are stored byte for byte) evaluate like their folder."""
    from official.data import convert

    rng = np.random.default_rng(4)
    root = tmp_path / "raw"
    for name, size in zip("abc", SIZES):
        for split, count in (("train", 1), ("validation", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                (root / split / name / f"{i}.jpg").write_bytes(encode(pixels, "JPEG"))
    convert.convert(str(root), str(tmp_path / "records"), num_workers=1, stream=io.StringIO())
    folder = sources.open_source(f"folder:{root}")
    records = sources.open_source(f"tfrecord:{tmp_path / 'records'}")
    fixed, _ = models
    evaluations = {
        "ten": lambda source: modes.multi_crop(
            fixed, source, "validation", batch_size=20, geometry=GEOMETRY, kind="ten"
        ),
        "dense": lambda source: modes.dense_eval(
            fixed, source, "validation", geometry=GEOMETRY, scales=(37, 48)
        ),
    }
    for evaluate in evaluations.values():
        (from_folder, folder_labels) = evaluate(folder)
        (from_records, record_labels) = evaluate(records)
        assert folder_labels.tolist() == record_labels.tolist() == [0, 0, 1, 1, 2, 2]
        np.testing.assert_allclose(from_records, from_folder, atol=1e-6)
    picked = [4, 1]
    np.testing.assert_array_equal(
        cam.center_images(records, "validation", picked, GEOMETRY),
        cam.center_images(folder, "validation", picked, GEOMETRY),
    )
    # int8 calibration draws training images from either kind of source.
    from official import config as config_lib
    from official import export_lib

    config = config_lib.Config()
    config.data.image_size, config.data.crop_fraction = 32, 0.875
    config.data.interpolation = "bilinear"
    expected = cam.center_images(folder, "train", [0, 1, 2], GEOMETRY)
    for spec in (f"folder:{root}", f"tfrecord:{tmp_path / 'records'}"):
        config.data.source = spec
        images = export_lib.calibration_images(config, 2)
        assert len(images) == 2 and images[0].shape == (1, 32, 32, 3)
        assert images[0].dtype == np.float32
        for image in images:  # Each is one of the training images, preprocessed for eval.
            assert any(np.array_equal(image[0], e) for e in expected)
