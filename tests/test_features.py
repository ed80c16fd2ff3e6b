"""`python -m official.features` and features_lib: the pooled features of a trained run, the
linear classifier fitted on them, and bad input refused with nothing written."""

import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import DIGITS, run_module

from official import features_lib, runs
from official.data import preprocess
from official.errors import UserError
from official.models import heads


@pytest.fixture(scope="module")
def extracted(trained_run, tmp_path_factory):
    """The features of the quickstart run on its own digits: (output dir, CompletedProcess)."""
    out = tmp_path_factory.mktemp("features") / "digits"
    result = run_module("official.features", f"--model_dir={trained_run}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_features_labels_and_classes_of_both_splits(extracted, trained_run):
    out, result = extracted
    classes = sorted(path.name for path in (DIGITS / "train").iterdir())
    assert (out / "classes.txt").read_text().split() == classes
    model = runs.load_trained_model(str(trained_run)).model
    dims = model.get_layer(heads.POOL_LAYER).output.shape[-1]
    for split in ("train", "validation"):
        features = np.load(out / f"{split}_features.npy")
        labels = np.load(out / f"{split}_labels.npy")
        counts = [len(list((DIGITS / split / name).iterdir())) for name in classes]
        assert features.shape == (sum(counts), dims) and features.dtype == np.float32
        assert np.bincount(labels, minlength=len(classes)).tolist() == counts
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    match = re.search(
        r"linear classifier: validation top-1 ([\d.]+) \((\d+) train / (\d+) validation "
        rf"features, {dims} dims\)",
        result.stdout,
    )
    assert match, result.stdout
    # The 2-epoch run itself reaches ~0.75; a linear classifier on its features ~0.93.
    assert float(match.group(1)) >= 0.85


def test_features_are_the_models_pooled_activations(extracted, trained_run):
    """The first validation images, preprocessed as evaluation does, through the run's model up
    to its global average pooling."""
    out, _ = extracted
    model, config, _, _ = runs.load_trained_model(str(trained_run))
    geometry = runs.geometry(config)
    pooled = tf.keras.Model(model.inputs, model.get_layer(heads.POOL_LAYER).output)
    classes = (out / "classes.txt").read_text().split()
    first = sorted((DIGITS / "validation" / classes[0]).iterdir())[:3]
    images = np.stack(
        [preprocess.eval_image(tf.constant(path.read_bytes()), geometry).numpy() for path in first]
    )
    expected = pooled([images.astype(np.float32)], training=False).numpy()
    np.testing.assert_allclose(
        np.load(out / "validation_features.npy")[:3], expected, rtol=1e-4, atol=1e-5
    )


def test_the_linear_classifier_reaches_the_optimum_of_its_objective():
    """At the returned weights the gradient of mean cross-entropy + (λ/2)||W||² on the
    L2-normalized features (transcribed here) vanishes."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 12)) * rng.uniform(0.5, 5, size=(200, 1))
    labels = np.argmax(features[:, :4] + rng.normal(scale=0.5, size=(200, 4)), axis=1)
    weights, bias, steps = features_lib.fit_linear_classifier(features, labels, 4, 1e-3)
    assert steps < features_lib.MAX_STEPS
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    logits = x @ weights + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(200), labels] -= 1
    assert np.abs(x.T @ p / 200 + 1e-3 * weights).max() < 1e-6
    assert np.abs(p.sum(axis=0) / 200).max() < 1e-6
    assert np.mean(features_lib.predict(weights, bias, features) == labels) > 0.8


@pytest.mark.parametrize(
    "options, culprit",
    [
        ({}, "exactly one of --model_dir"),
        ({"model_dir": "RUN", "init_weights": "w.pth"}, "exactly one of --model_dir"),
        ({"model_dir": "RUN", "source": "folder:/no/such/dir"}, "/no/such/dir"),
        (
            {"init_weights": "w.pth", "model": "resnet_nine", "source": "folder:DIGITS"},
            "resnet_nine",
        ),
        ({"init_weights": "w.pth", "model": "resnet18", "output_dir": "OUT"}, "--source"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(options, culprit, trained_run, tmp_path):
    """A UserError (one line, exit status 2 through cli.user_errors) before anything is
    written."""
    out = tmp_path / "out"
    replace = {"RUN": str(trained_run), "DIGITS": str(DIGITS), "OUT": str(out)}
    options = {key: replace.get(value, value) for key, value in options.items()}
    options.setdefault("output_dir", str(out))
    with pytest.raises(UserError, match=re.escape(culprit)):
        features_lib.run(features_lib.Options(**options))
    assert not out.exists()
