"""The reference preprocessing: crops, colour jitter, PCA lighting, eval centre crop."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import catalog, preprocess


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_scale_jitter_window_matches_vgg_shorter_side_range():
    shape = tf.constant([300, 400, 3])
    sides = []
    for i in range(300):
        y, x, h, w = preprocess.scale_jitter_window(
            shape, tf.constant([2, i]), image_size=112, scale_range=(256, 512)
        ).numpy()
        assert h == w and y >= 0 and x >= 0 and y + h <= 300 and x + w <= 400
        sides.append(h)
    # The shorter side (300) rescaled to S in [128, 256] (the 224 range scaled to 112): the
    # 112 crop covers 300 * 112 / S pixels of the original, i.e. 131..262.
    assert 130 <= min(sides) < 140 and 250 < max(sides) <= 263


def test_scale_jitter_with_s_min_equal_to_s_max_is_vgg_fixed_scale_training():
    """S_min = S_max = 384: every crop is 224 of the image rescaled to S = 384 (arXiv 1409.1556
    §3.1, single-scale training), at a random position."""
    shape = tf.constant([300, 400, 3])
    windows = np.array(
        [
            preprocess.scale_jitter_window(
                shape, tf.constant([5, i]), image_size=224, scale_range=(384, 384)
            ).numpy()
            for i in range(20)
        ]
    )
    assert set(windows[:, 2]) == {175} and set(windows[:, 3]) == {175}  # round(300 * 224 / 384)
    assert len(set(map(tuple, windows[:, :2]))) > 10


def test_train_image_crops_and_options_are_reproducible():
    pixels = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    encoded = tf.constant(_jpeg(pixels))
    geometry = preprocess.Geometry(32, 0.875, "bilinear")
    for crop in preprocess.TRAIN_CROPS:
        options = dict(
            geometry=geometry,
            preprocessing=preprocess.TrainPreprocessing(
                train_crop=crop, color_jitter=0.4, pca_lighting=0.1
            ),
        )
        first = preprocess.train_image(encoded, tf.constant([1, 2]), **options)
        again = preprocess.train_image(encoded, tf.constant([1, 2]), **options)
        other = preprocess.train_image(encoded, tf.constant([1, 3]), **options)
        assert first.shape == (32, 32, 3) and first.dtype == tf.uint8
        np.testing.assert_array_equal(first, again)
        assert np.any(first.numpy() != other.numpy())
    with pytest.raises(ValueError, match="unknown training crop 'random'"):
        preprocess.train_image(
            encoded,
            tf.constant([1, 2]),
            geometry=geometry,
            preprocessing=preprocess.TrainPreprocessing(train_crop="random"),
        )


def test_color_jitter_factors_stay_in_bag_of_tricks_range():
    # On a grey image contrast and saturation blends change nothing: only brightness acts.
    grey = tf.fill([4, 4, 3], 100.0)
    values = [
        float(preprocess.color_jitter(grey, tf.constant([0, i]), 0.4)[0, 0, 0]) for i in range(200)
    ]
    assert 60 - 1e-3 <= min(values) < 64 and 136 < max(values) <= 140 + 1e-3
    coloured = tf.constant([[[200.0, 50.0, 10.0]]])
    out = preprocess.color_jitter(coloured, tf.constant([0, 5]), 0.0)
    np.testing.assert_allclose(out, coloured, rtol=1e-6)  # strength 0 is the identity


def test_pca_lighting_noise_has_alexnet_covariance():
    sigma, draws = 0.1, 2000
    image = tf.zeros([1, 1, 3])
    offsets = np.stack(
        [preprocess.pca_lighting(image, tf.constant([9, i]), sigma)[0, 0] for i in range(draws)]
    )
    vectors = np.asarray(catalog.IMAGENET_PCA_EIGENVECTORS)
    values = np.asarray(catalog.IMAGENET_PCA_EIGENVALUES)
    # Projected on eigenvector j, the offset is α_j λ_j with α_j ~ N(0, σ).
    projected = offsets @ vectors
    np.testing.assert_allclose(projected.std(axis=0), sigma * values, rtol=0.1)
    assert np.abs(np.corrcoef(projected.T)[np.triu_indices(3, 1)]).max() < 0.1


def test_eval_bicubic_overshoot_is_clipped_not_wrapped():
    step = np.zeros((10, 10, 3), np.uint8)
    step[:, 5:] = 255
    buffer = io.BytesIO()
    Image.fromarray(step).save(buffer, format="PNG")
    out = preprocess.eval_image(
        tf.constant(buffer.getvalue()), preprocess.Geometry(30, 1.0, "bicubic")
    )
    resized = tf.image.resize(step, [30, 30], method="bicubic").numpy()
    assert resized.min() < -1 and resized.max() > 256  # bicubic rings around the edge
    assert out.dtype == tf.uint8 and out.shape == (30, 30, 3)
    np.testing.assert_allclose(out.numpy(), np.clip(np.round(resized), 0, 255), atol=1)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "area", "nearest"])
def test_resize_uint8_matches_resizing_the_uint8_image(method):
    # resize_uint8 casts to float32 first because those kernels are faster; the pixels must
    # be the ones TensorFlow's uint8 kernels give, rounded half up and saturated.
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (61, 47, 3), np.uint8))
    for size in (32, (40, 90)):
        expected = tf.image.resize(image, [size, size] if isinstance(size, int) else size, method)
        if expected.dtype != tf.uint8:
            expected = tf.cast(tf.clip_by_value(tf.floor(expected + 0.5), 0, 255), tf.uint8)
        np.testing.assert_array_equal(preprocess.resize_uint8(image, size, method), expected)


def _image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_center_crop_window_is_centered_square():
    window = preprocess.center_crop_window(tf.constant([100, 60, 3]), 0.5).numpy()
    assert window.tolist() == [35, 15, 30, 30]


def test_eval_image_equals_hand_computed_center_crop():
    image = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    encoded = _image_bytes(image, "PNG")
    out = preprocess.eval_image(
        tf.constant(encoded), preprocess.Geometry(20, 0.5, "nearest")
    ).numpy()
    np.testing.assert_array_equal(out, image[10:30, 10:30])


def test_inception_crop_window_stays_inside_and_is_reproducible():
    shape = tf.constant([300, 400, 3])
    windows = [
        preprocess.inception_crop_window(shape, tf.constant([7, i])).numpy() for i in range(50)
    ]
    for y, x, h, w in windows:
        assert min(y, x) >= 0 and y + h <= 300 and x + w <= 400
        assert h * w >= 0.08 * 300 * 400 * 0.99
    again = preprocess.inception_crop_window(shape, tf.constant([7, 3])).numpy()
    np.testing.assert_array_equal(again, windows[3])


def test_train_image_jpeg_and_png_give_same_shape():
    pixels = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG"):
        out = preprocess.train_image(
            tf.constant(_image_bytes(pixels, fmt)),
            tf.constant([1, 2]),
            geometry=preprocess.Geometry(32, 0.875, "bilinear"),
            preprocessing=preprocess.TrainPreprocessing(),
        )
        assert out.shape == (32, 32, 3) and out.dtype == tf.uint8


def test_vertical_flip_is_a_switch_independent_of_the_horizontal_flip():
    pixels = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    encoded = tf.constant(_jpeg(pixels))
    geometry = preprocess.Geometry(32, 0.875, "bilinear")

    def image(seed, **switches):
        options = preprocess.TrainPreprocessing(train_crop="resize", **switches)
        return preprocess.train_image(
            encoded, tf.constant([4, seed]), geometry=geometry, preprocessing=options
        ).numpy()

    plain = image(0, random_flip=False)
    outcomes = {
        "none": plain,
        "vertical": plain[::-1],
        "horizontal": plain[:, ::-1],
        "both": plain[::-1, ::-1],
    }
    seen = []
    for seed in range(24):
        flipped = image(seed, random_flip=True, random_vertical_flip=True)
        seen += [name for name, value in outcomes.items() if np.array_equal(flipped, value)]
        # Off, the switch leaves the horizontal flip's images as they were.
        unchanged = image(seed, random_flip=True)
        assert np.array_equal(unchanged, plain) or np.array_equal(unchanged, plain[:, ::-1])
    assert len(seen) == 24 and set(seen) == set(outcomes)


# RGB → YIQ and MXNet HueJitterAug's rounded YIQ → RGB, transcribed from mx.image.
_TYIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_MXNET_ITYIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])
# The same transform to 4 decimals, whose chroma rows sum to 0 (grey has no chroma).
_NTSC_YIQ = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])


def _mxnet_hue(image, alpha):
    """MXNet's HueJitterAug.__call__ for a given α: src · (ityiq · bt · tyiq)ᵀ."""
    u, w = np.cos(alpha * np.pi), np.sin(alpha * np.pi)
    bt = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
    return image @ (_MXNET_ITYIQ @ bt @ _TYIQ).T


def test_hue_jitter_rotates_chroma_as_mxnet_and_keeps_luma():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (5, 6, 3))
    image[0, 0] = 90.0  # a grey pixel
    strength = 0.4
    angles = []
    for seed in range(40):
        out = preprocess.hue_jitter(
            tf.constant(image, tf.float32), tf.constant([1, seed]), strength
        )
        out = out.numpy().astype(np.float64)
        yiq_in, yiq_out = image @ _NTSC_YIQ.T, out @ _NTSC_YIQ.T
        np.testing.assert_allclose(yiq_out[..., 0], yiq_in[..., 0], atol=1e-3)  # luma kept
        np.testing.assert_allclose(out[0, 0], 90.0, atol=1e-3)  # grey stays grey
        # One rotation of the (I, Q) plane for every pixel, by at most strength · 180°.
        chroma_in = yiq_in[..., 1] + 1j * yiq_in[..., 2]
        chroma_out = yiq_out[..., 1] + 1j * yiq_out[..., 2]
        turn = chroma_out[1:] / chroma_in[1:]
        np.testing.assert_allclose(np.abs(turn), 1.0, atol=1e-4)
        angle = np.angle(turn).mean()
        np.testing.assert_allclose(np.angle(turn), angle, atol=1e-4)
        assert abs(angle) <= strength * np.pi + 1e-4
        angles.append(angle)
        # MXNet's augmenter at that angle gives the same image, up to its rounded inverse.
        np.testing.assert_allclose(out, _mxnet_hue(image, angle / np.pi), atol=1.5)
    # α is drawn from the whole of [-h, h].
    assert min(angles) < -0.7 * strength * np.pi and max(angles) > 0.7 * strength * np.pi
    unchanged = preprocess.hue_jitter(tf.constant(image, tf.float32), tf.constant([1, 0]), 0.0)
    np.testing.assert_allclose(unchanged, image, atol=1e-3)  # strength 0 is the identity
