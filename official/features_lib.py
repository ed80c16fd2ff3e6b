"""A network as a fixed feature extractor: the wiring behind `python -m official.features`.

Simonyan & Zisserman (arXiv 1409.1556, Appendix B) use their ImageNet networks on other
datasets by removing the last classification layer, taking the penultimate activations as
image features, L2-normalizing them and training a linear SVM on them. `run` does the same
with any network of the package: the features are the input of the classifier layer
(`heads.CLASSIFIER_LAYER`; a feature map there, as in SqueezeNet's convolutional classifier, is
globally averaged) — the globally pooled features of the GAP families, VGG's and AlexNet's
fc7 — of every image of a data source's train and validation splits, through the network's
evaluation preprocessing (the single center crop of `official.evaluate`; VGG's dense
multi-scale aggregation is not done). They are written as .npy files, and a multinomial
logistic regression (the linear classifier, trained on the L2-normalized train features) is
scored on the validation features.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from official import atomic, runs, weights_lib
from official import config as config_lib
from official.data import sources
from official.evaluation import modes
from official.models import heads, registry
from official.training import transfer

SPLITS = (sources.TRAIN, sources.VALIDATION)
CLASSES_FILE = "classes.txt"
RESULTS_FILE = "linear_classifier.json"
# Where the features go when --output_dir is not given (a run's own directory only).
RESULTS_DIR = "features"
DEFAULT_BATCH_SIZE = 64
# Full-batch accelerated gradient descent on the convex objective stops when the gradient's
# norm is this small, or after this many steps.
TOLERANCE = 1e-6
MAX_STEPS = 10_000


@dataclasses.dataclass
class Options:
    """Where the network and the images come from (the `official.features` flags)."""

    model_dir: str = ""  # A training run (its latest checkpoint) ...
    init_weights: str = ""  # ... or weights weights_lib reads: a run or a checkpoint in one,
    model: str = ""  # a keras .h5, .pth/.pt or .safetensors file for this registry model.
    source: str = ""  # folder:PATH, tfrecord:DIR, ...; "": the run's own data (--model_dir).
    output_dir: str = ""  # "": <model_dir>/features.
    batch_size: int = DEFAULT_BATCH_SIZE
    l2_regularization: float = 1e-4  # λ of the linear classifier's (λ/2)·||W||².


def file_name(split: str, what: str) -> str:
    """`<split>_features.npy` or `<split>_labels.npy`."""
    return f"{split}_{what}.npy"


def _fail(flag: str, value, expected: str) -> None:
    raise config_lib.ConfigError(f"--{flag}={value!r}: {expected}")


def _check_options(options: Options) -> None:
    if bool(options.model_dir) == bool(options.init_weights):
        raise config_lib.ConfigError(
            "give exactly one of --model_dir (a training run) and --init_weights (weights "
            "with --model)"
        )
    if options.model_dir and options.model:
        _fail("model", options.model, "only with --init_weights (a run names its model)")
    if options.init_weights and not options.source:
        _fail("source", options.source, "required with --init_weights (folder:PATH, ...)")
    if options.init_weights and not options.output_dir:
        _fail("output_dir", options.output_dir, "required with --init_weights")
    if options.batch_size <= 0:
        _fail("batch_size", options.batch_size, "expected a positive number of images")
    if not options.l2_regularization >= 0:
        _fail("l2_regularization", options.l2_regularization, "expected >= 0")


def _network(options: Options) -> tuple[keras.Model, config_lib.Config, str]:
    """(model with its weights, the config of its input, a description of the weights).

    A run (or a checkpoint inside one) is loaded as every command loads it; another weights
    file is ported into `--model` built with the normalization and arithmetic of the weights.
    """
    path = options.model_dir or options.init_weights
    run_dir, checkpoint = runs.locate(path)
    if run_dir is not None:
        trained = runs.load_trained_model(run_dir, checkpoint=checkpoint)
        name = trained.config.model.name
        if options.model and registry.get(options.model).name != name:
            _fail("model", options.model, f"{path} is a run of {name}")
        return trained.model, trained.config, trained.checkpoint
    if not options.model:
        _fail("model", options.model, "required with --init_weights (the weights' architecture)")
    spec = registry.get(options.model)
    loaded = weights_lib.load(path, spec, {}, flag="--init_weights")
    if loaded.model is None:
        _fail("init_weights", path, "a checkpoint without its run directory")
    config = weights_lib.run_config(spec, loaded)
    model = runs.build_model(config)
    transfer.copy_matching_weights(loaded.model, model)
    return model, config, os.path.abspath(path)


def feature_model(model: keras.Model) -> keras.Model:
    """The model up to the input of its classifier layer, globally averaged if a feature map.

    Raises:
      ConfigError: the model has no layer named `heads.CLASSIFIER_LAYER`.
    """
    try:
        classifier = model.get_layer(heads.CLASSIFIER_LAYER)
    except ValueError:
        raise config_lib.ConfigError(
            f"{model.name}: no '{heads.CLASSIFIER_LAYER}' layer to take the features before"
        ) from None
    features = classifier.input
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="feature_pool")(features)
    return keras.Model(model.inputs, features, name=f"{model.name}_features")


def _features_function(model: keras.Model, image_size: int):
    """uint8-valued float32 images (N, S, S, 3) → float32 features (N, D), compiled once."""
    extractor = feature_model(model)
    signature = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")]
    return tf.function(
        lambda images: tf.cast(extractor(images, training=False), tf.float32),
        input_signature=signature,
    )


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (a zero row stays zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float64).tiny)


def objective(weights, bias, features, labels, l2_regularization: float):
    """The linear classifier's loss and gradients: mean softmax cross-entropy of
    features @ weights + bias, plus (λ/2)·||weights||² (the bias is not penalized).

    Returns:
      (loss, gradient of weights, gradient of bias).
    """
    logits = features @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    count = len(labels)
    loss = -log_probabilities[np.arange(count), labels].mean()
    loss += 0.5 * l2_regularization * np.sum(weights**2)
    residual = np.exp(log_probabilities)
    residual[np.arange(count), labels] -= 1.0
    residual /= count
    return (
        loss,
        features.T @ residual + l2_regularization * weights,
        residual.sum(axis=0),
    )


def fit_linear_classifier(
    features: np.ndarray, labels: np.ndarray, num_classes: int, l2_regularization: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression on L2-normalized features, solved to convergence.

    VGG's Appendix B trains a linear SVM on L2-normalized features; the logistic loss is the
    smooth counterpart with the same linear decision rule, and its convex objective is
    minimized exactly by full-batch accelerated gradient descent (FISTA's momentum, Beck &
    Teboulle 2009) in float64, with no step size to tune: with unit-norm features and the bias
    as a constant feature, the gradient is Lipschitz with constant 1/2 · (1 + 1) + λ (the
    softmax cross-entropy's Hessian has norm at most 1/2).

    Args:
      features: (N, D) features (normalized here).
      labels: (N,) integer labels in [0, num_classes).
      num_classes: K.
      l2_regularization: λ.

    Returns:
      (weights (D, K), bias (K,), steps taken).
    """
    x = l2_normalize(features.astype(np.float64))
    labels = labels.astype(np.int64)
    step = 1.0 / (1.0 + l2_regularization)
    weights = np.zeros((x.shape[1], num_classes))
    bias = np.zeros(num_classes)
    previous = (weights, bias)
    momentum_t, steps = 1.0, 0
    while steps < MAX_STEPS:
        _, grad_w, grad_b = objective(weights, bias, x, labels, l2_regularization)
        if np.sqrt(np.sum(grad_w**2) + np.sum(grad_b**2)) < TOLERANCE:
            break
        steps += 1
        new = (weights - step * grad_w, bias - step * grad_b)
        # Momentum that points uphill is dropped (adaptive restart, O'Donoghue & Candès 2015,
        # "gradient scheme"): linear convergence on this strongly convex objective instead of
        # many steps of oscillation when λ is small.
        if np.sum(grad_w * (new[0] - previous[0])) + np.sum(grad_b * (new[1] - previous[1])) > 0:
            momentum_t = 1.0
        next_t = (1.0 + np.sqrt(1.0 + 4.0 * momentum_t**2)) / 2.0
        beta = (momentum_t - 1.0) / next_t
        weights = new[0] + beta * (new[0] - previous[0])
        bias = new[1] + beta * (new[1] - previous[1])
        previous, momentum_t = new, next_t
    return weights, bias, steps


def predict(weights: np.ndarray, bias: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The linear classifier's class for each row of (unnormalized) features."""
    return np.argmax(l2_normalize(features.astype(np.float64)) @ weights + bias, axis=1)


def _save_array(path: str, array: np.ndarray) -> str:
    with atomic.open_file(path, "wb") as f:
        np.save(f, array)
    return path


def run(options: Options) -> dict:
    """Extracts and writes the features of both splits, then fits and scores the linear
    classifier.

    Returns:
      What `linear_classifier.json` records: the top-1 on validation, the counts and
      dimension, λ, the network, the source, and the files written.

    Raises:
      UserError: neither or both of --model_dir and --init_weights, an unknown model, an
        unreadable source or weights, a source without both splits (nothing is written).
    """
    _check_options(options)
    if options.model_dir:
        run_config, _ = runs.load_config(options.model_dir)
    else:
        run_config = config_lib.Config()  # The default data settings (pixel limit, TFDS dirs).
        if options.model:
            registry.get(options.model)  # An unknown name fails before any weights are read.
    source_spec = options.source or run_config.data.source
    # The features of a subset of the images would describe another dataset.
    source = runs.open_source(run_config, source_spec, bad_records="fail")
    for split in SPLITS:
        if not source.info.num_examples.get(split):
            _fail("source", source_spec, f"has no {split} images (needs {' and '.join(SPLITS)})")
    model, config, weights = _network(options)
    geometry = runs.geometry(config)
    directory = options.output_dir or os.path.join(options.model_dir, RESULTS_DIR)
    atomic.ensure_directory(directory, "--output_dir")

    extract = _features_function(model, geometry.image_size)
    arrays = {}
    with sources.reading(source):
        for split in SPLITS:
            arrays[split] = modes.center(
                extract,
                source,
                split,
                batch_size=options.batch_size,
                geometry=geometry,
                description=f"features {split}",
            )
    files = []
    for split, (features, labels) in arrays.items():
        files.append(_save_array(os.path.join(directory, file_name(split, "features")), features))
        files.append(_save_array(os.path.join(directory, file_name(split, "labels")), labels))
    class_names = list(source.info.class_names)
    files.append(
        atomic.write_text(os.path.join(directory, CLASSES_FILE), "\n".join(class_names) + "\n")
    )

    (train_features, train_labels), (validation_features, validation_labels) = arrays.values()
    w, b, steps = fit_linear_classifier(
        train_features, train_labels, len(class_names), options.l2_regularization
    )
    top1 = float(np.mean(predict(w, b, validation_features) == validation_labels))
    results = {
        "top1": top1,
        "train_top1": float(np.mean(predict(w, b, train_features) == train_labels)),
        "train_examples": len(train_labels),
        "validation_examples": len(validation_labels),
        "dimensions": int(train_features.shape[1]),
        "l2_regularization": options.l2_regularization,
        "steps": steps,
        "model": config.model.name,
        "weights": weights,
        "source": source_spec,
        "settings": dataclasses.asdict(geometry),
        "files": [os.path.abspath(path) for path in files],
    }
    results_file = atomic.write_json(os.path.join(directory, RESULTS_FILE), results)
    return {**results, "results_file": results_file}
