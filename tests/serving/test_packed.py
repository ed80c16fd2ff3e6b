"""Binary networks end to end: a tiny XNOR-Net trains in the training loop under
mixed_bfloat16, exports to a SavedModel and to packed weights (1 bit per binary weight), and
the packed weights give exactly the float model's outputs (official/serving/packed.py)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from helpers import randomize, synthetic_config

from official import export_lib, runs, train_lib
from official.models import binary, registry
from official.serving import packed, saved_model


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """2 epochs (8 steps) of tiny_xnor_cnn on synthetic 16 px images, Adam (the XNOR-Net and
    Bi-Real recipes' optimizer), bfloat16 compute; checkpoints after each epoch."""
    model_dir = tmp_path_factory.mktemp("binary") / "run"
    config = synthetic_config(tiny.BINARY_NAME, num_classes=4, examples=64, image_size=16, epochs=2)
    config.train.optimizer = "adam"
    config.train.base_learning_rate = 0.01
    config.train.weight_decay = 0.0
    config.runtime.precision = "mixed_bfloat16"
    previous = keras.config.dtype_policy()
    try:
        metrics = train_lib.run(config, str(model_dir))
    finally:
        keras.config.set_dtype_policy(previous)
    return model_dir, metrics


def _images(size: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def test_binary_model_trains_in_the_loop_under_bfloat16(binary_run):
    model_dir, metrics = binary_run
    assert metrics["steps"] == 8 and np.isfinite(metrics["loss"])
    first, last = runs.checkpoints_newest_first(runs.checkpoint_dir(str(model_dir)))[::-1][:2]
    before = runs.load_trained_model(str(model_dir), checkpoint=first).model
    after = runs.load_trained_model(str(model_dir), checkpoint=last).model
    # The latent kernel of the binary convolution learns through the straight-through
    # estimator (its signs are what the forward pass sees).
    kernel_before = before.get_layer("block2_conv").kernel.numpy()
    kernel_after = after.get_layer("block2_conv").kernel.numpy()
    assert kernel_before.dtype == np.float32
    assert np.abs(kernel_after - kernel_before).max() > 1e-4
    assert isinstance(after.get_layer("block2_conv"), binary.BinaryConv2D)


def test_packed_export_loads_back_exactly(binary_run, tmp_path):
    model_dir, _ = binary_run
    path = export_lib.export(str(model_dir), str(tmp_path / "packed"), export_format="packed")
    assert path == str(tmp_path / "packed" / "1" / packed.FILE_NAME)
    metadata = json.loads((tmp_path / "packed" / "1" / "export.json").read_text())
    assert metadata["format"] == "packed" and metadata["model"] == tiny.BINARY_NAME
    trained = runs.load_trained_model(str(model_dir)).model
    split = binary.parameter_split(trained)
    assert metadata["parameters"]["binary"] == split.binary == 3 * 3 * 8 * 16
    assert (tmp_path / "packed" / "1" / "labels.txt").is_file()
    loaded = packed.load_model(path)
    images = _images(16)
    np.testing.assert_array_equal(
        np.asarray(loaded(images, training=False)), np.asarray(trained(images, training=False))
    )
    # The SavedModel of the same run serves the same logits.
    version = export_lib.export(str(model_dir), str(tmp_path / "serving"))
    served = saved_model.load(version).signatures[saved_model.IMAGES_SIGNATURE]
    logits = served(images=tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(logits, np.asarray(trained(images, training=False)), atol=1e-5)


def test_packed_export_refuses_a_real_model(tmp_path):
    model = registry.get(tiny.NAME).build(num_classes=3, image_size=16)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(packed.PackedWeightsError, match="no binary layers"):
        packed.export(
            model,
            export_dir=str(tmp_path / "out"),
            labels_path=str(labels),
            metadata={"model": tiny.NAME},
            builder_arguments={},
        )
    assert not (tmp_path / "out" / "1").exists()


def _zoo_params():
    for name in ("xnor_resnet18", "birealnet18", "bwn_resnet18", "xnor_alexnet"):
        # The default suite's exact round trip is test_packed_export_loads_back_exactly's.
        yield pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.parametrize("name", _zoo_params())
def test_packed_round_trip_is_exact(name, tmp_path):
    spec = registry.get(name)
    size = 64 if spec.family == "alexnet" else 32
    options = dict(num_classes=5, image_size=size, width_multiplier=0.125)
    model = spec.build(**options)
    randomize(model)
    path = str(tmp_path / "weights.npz")
    measured = packed.save(model, path)
    fresh = spec.build(**options)
    packed.load(fresh, path)
    images = _images(size)
    np.testing.assert_array_equal(
        np.asarray(fresh(images, training=False)), np.asarray(model(images, training=False))
    )
    float_file = packed.save(model, str(tmp_path / "float.npz"), packed=False)
    assert measured["file_bytes"] < float_file["file_bytes"]
    assert measured["binary_kernel_bytes"] < float_file["binary_kernel_bytes"]
    wrong = registry.get(name).build(**{**options, "num_classes": 6})
    with pytest.raises(packed.PackedWeightsError, match="predictions/kernel has shape"):
        packed.load(wrong, path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["birealnet18", "xnor_alexnet"])
def test_packed_files_are_32x_smaller_for_binary_layers(name, tmp_path):
    """At full size: the binary layers' entries shrink ~32x (1 bit instead of 32, plus one
    float32 α per output channel and the NumPy headers)."""
    spec = registry.get(name)
    model = spec.build(num_classes=1000, image_size=64 if spec.family == "alexnet" else 32)
    packed_sizes = packed.save(model, str(tmp_path / "packed.npz"))
    float_sizes = packed.save(model, str(tmp_path / "float.npz"), packed=False)
    ratio = float_sizes["binary_kernel_bytes"] / packed_sizes["binary_kernel_bytes"]
    assert 31.0 < ratio < 32.0
    split = binary.parameter_split(model)
    # Whole file: 1 bit per binary weight + 4 bytes per other number, + α and the NumPy/zip
    # headers (~1.2 % for Bi-Real-18).
    assert 0 < packed_sizes["file_bytes"] - split.memory_bytes < 0.02 * split.memory_bytes
