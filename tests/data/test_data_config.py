"""The `--config.data.*` fields: validation names the flag; resolve() fills the defaults from
the model's registry entry and the dataset's catalog entry; training wires them end to end."""

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from official import config as config_lib
from official import registry
from official.data import catalog


def _resolve(config, spec=None, **kwargs):
    values = dict(num_classes=10, num_train_examples=1000, num_eval_examples=200)
    values.update(kwargs)
    return config_lib.resolve(config, spec=spec or registry.get("resnet50"), **values)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("augment", ("randaugment", "mixup"), "unknown augmentation 'mixup'"),
        ("train_crop", "random", "--config.data.train_crop='random'"),
        ("scale_jitter", (512, 256), "--config.data.scale_jitter=(512, 256)"),
        ("color_jitter", 1.5, "--config.data.color_jitter=1.5: expected in [0, 1)"),
        ("mixup_alpha", -0.2, "--config.data.mixup_alpha=-0.2"),
        ("mix_probability", 2.0, "--config.data.mix_probability=2.0"),
        ("class_weights", "balanced", "--config.data.class_weights='balanced'"),
        ("class_weight_beta", 1.0, "--config.data.class_weight_beta=1.0"),
        ("resample", "smote", "--config.data.resample='smote'"),
        ("resample_exponent", 2.0, "--config.data.resample_exponent=2.0"),
        ("rare_class_fraction", 0.5, "unless --config.data.augment names"),
        ("tf_data_service", "localhost:5050", "expected grpc://HOST:PORT"),
        ("randaugment_num_ops", 0, "--config.data.randaugment_num_ops=0"),
    ],
)
def test_validate_names_the_data_flag(field, value, expected):
    config = config_lib.Config()
    setattr(config.data, field, value)
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    assert expected in str(error.value)


def test_deterministic_cannot_use_tf_data_service():
    config = config_lib.Config()
    config.data.tf_data_service = "grpc://dispatcher:5050"
    config_lib.validate(config)
    config.data.deterministic = True
    with pytest.raises(config_lib.ConfigError, match="--config.data.deterministic=True"):
        config_lib.validate(config)
    config.data.deterministic = False
    config.runtime.deterministic = True  # implies a deterministic input order
    with pytest.raises(config_lib.ConfigError, match="--config.runtime.deterministic=True"):
        config_lib.validate(config)


def test_resolve_takes_crop_and_interpolation_from_the_model():
    spec = dataclasses.replace(
        registry.get("resnet50"), train_crop="scale_jitter", interpolation="bicubic"
    )
    resolved, _ = _resolve(config_lib.Config(), spec)
    assert resolved.data.train_crop == "scale_jitter" and resolved.data.interpolation == "bicubic"
    assert _resolve(config_lib.Config())[0].data.train_crop == "inception"  # the default
    config = config_lib.Config()
    config.data.train_crop = "resize"
    assert _resolve(config, spec)[0].data.train_crop == "resize"  # the flag wins


def test_resolve_normalizes_with_the_datasets_statistics():
    spec = dataclasses.replace(registry.get("resnet50"), mean=(127.5,) * 3, std=(127.5,) * 3)
    cifar, _ = _resolve(config_lib.Config(), spec, dataset_name="cifar10")
    assert cifar.data.mean == catalog.lookup("cifar10").mean == (125.307, 122.961, 113.8575)
    assert cifar.data.std == catalog.lookup("cifar10").std
    # ImageNet keeps the model's reference normalization, whichever source reads it.
    imagenet, _ = _resolve(config_lib.Config(), spec, dataset_name="imagenet2012")
    assert imagenet.data.mean == (127.5,) * 3 and imagenet.data.std == (127.5,) * 3
    unknown, _ = _resolve(config_lib.Config(), spec, dataset_name="my_photos")
    assert unknown.data.mean == (127.5,) * 3  # no catalog entry: the model's
    config = config_lib.Config()
    config.data.mean = (1.0, 2.0, 3.0)
    assert _resolve(config, spec, dataset_name="cifar10")[0].data.mean == (1.0, 2.0, 3.0)


def test_resolve_splits_comma_separated_augmentations():
    config = config_lib.Config()
    config.data.augment = ("randaugment, random_erasing", "augmix")
    assert _resolve(config)[0].data.augment == ("randaugment", "random_erasing", "augmix")


def test_catalog_flags_an_incomplete_imagenet():
    assert catalog.lookup("imagenet2012/subset:5.1.0").num_examples["train"] == 1_281_167
    assert (
        catalog.count_mismatches("imagenet2012", 1000, {"train": 1_281_167, "validation": 50_000})
        == []
    )
    assert catalog.count_mismatches("imagenet2012", 999, {"train": 1_281_000}) == [
        "imagenet2012: 999 classes, expected 1000",
        "imagenet2012: 1,281,000 train examples, expected 1,281,167",
    ]
    assert catalog.count_mismatches("my_photos", 3, {"train": 10}) == []


def test_training_run_with_every_data_option(tmp_path, caplog):
    """experiment.run on a tiny imbalanced folder: augmentations, mixing, class weights and
    re-sampling reach the loop, and the run writes its usual files."""
    from official.training import experiment

    rng = np.random.default_rng(0)
    for split, per_class in (("train", (12, 4)), ("validation", (3, 3))):
        for label, count in enumerate(per_class):
            folder = tmp_path / "data" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(80 + 100 * label, 20, (40, 48, 3)), 0, 255)
                buffer = io.BytesIO()
                Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
                (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
    config = config_lib.Config()
    config.model.name = "resnet18"
    config.model.width_multiplier = 0.25
    config.data.source = f"folder:{tmp_path / 'data'}"
    config.data.image_size = 32
    config.data.augment = ("rotation,random_erasing",)
    config.data.rare_class_fraction = 0.5
    config.data.color_jitter = 0.4
    config.data.pca_lighting = 0.1
    config.data.mixup_alpha = 0.2
    config.data.cutmix_alpha = 1.0
    config.data.class_weights = "effective_number"
    config.data.resample = "oversample"
    config.data.resample_exponent = 0.5
    config.train.batch_size = 8
    config.train.epochs = 2
    config.runtime.log_every_steps = 1
    with caplog.at_level("INFO"):
        metrics = experiment.run(config, str(tmp_path / "run"))
    assert "training examples per class: 2 classes, 16 examples; min 4 (class1)" in caplog.text
    assert "augmenting only 1 rare classes: [1]" in caplog.text
    assert metrics["steps"] == 4 and metrics["eval_examples"] == 6
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["data"]
    assert saved["augment"] == ["rotation", "random_erasing"]
    assert saved["train_crop"] == "inception"
