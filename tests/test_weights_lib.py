"""Weights from other frameworks, converted once into a run directory (official/weights_lib.py
and `python -m official.models --convert`)."""

import json

import numpy as np
import pytest
from helpers import as_torchvision_resnet, randomize, write_safetensors

from official import config as config_lib
from official import runs, weights_lib
from official.models import registry


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-layout ResNet-18 state dict (random weights, 1,000 classes)."""
    source = registry.get("resnet18").build(image_size=224)
    randomize(source)
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    write_safetensors(path, as_torchvision_resnet(source))
    return source, path


def test_convert_writes_a_run_every_command_starts_from(resnet18_file, tmp_path):
    source, path = resnet18_file
    out = tmp_path / "converted"
    summary = weights_lib.convert(str(path), "resnet18", str(out))
    assert summary["format"] == "safetensors" and summary["num_classes"] == 1000
    assert summary["mean"] == pytest.approx(registry.IMAGENET_MEAN)
    assert (summary["padding"], summary["norm_epsilon"]) == ("torch", 1e-5)
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["model"]["name"] == "resnet18" and saved["data"]["image_size"] == 224
    # 1,000 classes: ImageNet's synsets in sorted order, so evaluate/export/predict take it.
    labels = runs.read_labels(str(out))
    assert summary["labels"] == str(out / "labels.txt")
    assert len(labels) == 1000 and labels == sorted(labels)
    assert labels[0] == "n01440764" and labels[281] == "n02123045"  # tench; tabby
    trained = runs.load_trained_model(str(out))
    images = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(
        trained.model(images, training=False), source(images, training=False), atol=2e-4
    )
    # The Keras weights file holds the same weights for plain Keras use.
    plain = registry.get("resnet18").build(image_size=224)
    plain.load_weights(out / "resnet18.weights.h5")
    np.testing.assert_allclose(plain(images, training=False), trained.model(images), atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name != "converted"]  # nothing aside


def test_convert_refuses_in_one_line_and_writes_nothing(resnet18_file, tmp_path, run):
    _, path = resnet18_file
    (tmp_path / "taken").mkdir()
    with pytest.raises(config_lib.ConfigError, match="--out=.*taken: exists"):
        weights_lib.convert(str(path), "resnet18", str(tmp_path / "taken"))
    with pytest.raises(config_lib.ConfigError, match=r"--convert=.*: .*left over|does not fit"):
        weights_lib.convert(str(path), "resnet34", str(tmp_path / "r34"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    result = run(
        "official.models",
        f"--convert={tmp_path / 'missing.pth'}",
        "--model=resnet18",
        f"--out={tmp_path / 'x'}",
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "missing.pth" in line]
    assert len(lines) == 1 and "no such file or directory" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
