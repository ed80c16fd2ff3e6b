import dataclasses
import json
import pathlib

import pytest

from official import config as config_lib
from official import registry


def _resolve(config, **kwargs):
    values = dict(num_classes=10, num_train_examples=1000, num_eval_examples=200)
    values.update(kwargs)
    return config_lib.resolve(config, spec=registry.get("resnet50"), **values)


def test_resolve_fills_model_defaults_and_derives_values():
    config = config_lib.Config()
    config.train.batch_size = 100
    config.train.base_learning_rate = 0.1
    config.train.epochs = 2.5
    config.train.warmup_epochs = 1
    resolved, derived = _resolve(config)
    assert resolved.data.image_size == 224
    assert resolved.data.crop_fraction == 0.875
    assert resolved.data.interpolation == "bilinear"
    assert resolved.data.mean == pytest.approx((123.675, 116.28, 103.53))
    assert resolved.model.num_classes == 10
    assert derived.learning_rate == pytest.approx(0.1 * 100 / 256)  # linear scaling rule
    assert derived.steps_per_epoch == 10
    assert derived.total_steps == 25
    assert derived.warmup_steps == 10
    assert derived.eval_batch_size == 100
    # The input config is not modified.
    assert config.data.image_size == 0 and config.model.num_classes == 0


def test_resolve_keeps_explicit_values():
    config = config_lib.Config()
    config.data.image_size = 160
    config.data.mean = (1.0, 2.0, 3.0)
    config.data.std = (4.0, 5.0, 6.0)
    config.model.num_classes = 7
    config.train.eval_batch_size = 50
    resolved, derived = _resolve(config, num_train_examples=10_000)
    assert resolved.data.image_size == 160
    assert resolved.data.mean == (1.0, 2.0, 3.0)
    assert resolved.model.num_classes == derived.num_classes == 7
    assert derived.eval_batch_size == 50


@pytest.mark.parametrize(
    "section, field, value, expected",
    [
        ("train", "batch_size", 0, "--config.train.batch_size=0: expected > 0"),
        ("train", "optimizer", "sgdd", "--config.train.optimizer='sgdd': expected one of"),
        ("data", "train_crop", "random", "--config.data.train_crop='random'"),
        ("data", "crop_fraction", 1.5, "--config.data.crop_fraction=1.5"),
        ("data", "mean", (1.0, 2.0), "--config.data.mean=(1.0, 2.0): expected 3 values"),
        ("runtime", "precision", "fp16", "--config.runtime.precision='fp16'"),
        ("runtime", "distribution_strategy", "horovod", "distribution_strategy='horovod'"),
        ("train", "label_smoothing", 1.0, "--config.train.label_smoothing=1.0"),
    ],
)
def test_validate_names_the_flag(section, field, value, expected):
    config = config_lib.Config()
    setattr(getattr(config, section), field, value)
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    assert expected in str(error.value)


def test_batch_larger_than_dataset_is_an_error():
    config = config_lib.Config()
    config.train.batch_size = 2048
    with pytest.raises(config_lib.ConfigError, match="batch_size=2048: larger than the 1000"):
        _resolve(config)


def test_image_size_below_model_minimum_is_an_error():
    config = config_lib.Config()
    config.data.image_size = 16
    with pytest.raises(config_lib.ConfigError, match="image_size=16: resnet50 needs at least 32"):
        _resolve(config)


def test_save_and_load_round_trip(tmp_path):
    config = config_lib.Config()
    config.data.mean = (1.0, 2.0, 3.0)
    config.model.name = "resnet18"
    resolved, derived = _resolve(config)
    path = config_lib.save(str(tmp_path), resolved, derived)
    payload = json.loads(pathlib.Path(path).read_text())
    assert payload["derived"]["steps_per_epoch"] == derived.steps_per_epoch
    loaded, loaded_derived = config_lib.load(str(tmp_path))
    assert loaded == resolved
    assert loaded_derived == derived
    assert not list(tmp_path.glob("*.tmp"))


def test_load_from_a_directory_without_config(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="no config.json"):
        config_lib.load(str(tmp_path))


def test_every_field_has_a_default():
    config = config_lib.Config()
    for section in dataclasses.fields(config):
        for field in dataclasses.fields(getattr(config, section.name)):
            assert field.default is not dataclasses.MISSING or (
                field.default_factory is not dataclasses.MISSING
            )


@pytest.mark.parametrize(
    "section, field, value, expected",
    [
        (
            "train",
            "optimizer",
            "adagrad",
            "--config.train.optimizer='adagrad': expected one of sgd",
        ),
        ("train", "lr_schedule", "step", "--config.train.lr_decay_epochs=(): expected increasing"),
        ("train", "ema_decay", 1.0, "--config.train.ema_decay=1.0: expected in [0, 1)"),
        ("train", "gradient_accumulation_steps", 3, "a divisor of --config.train.batch_size=256"),
        ("train", "second_stage_epochs", 5.0, "second_stage_base_learning_rate=0.0: expected > 0"),
        ("train", "distill_teacher", "resnet50", "the teacher's weights for --config.train.dis"),
        ("train", "freeze_backbone_epochs", 90.0, "freeze_backbone_epochs=90.0: expected < "),
        ("model", "init_keras_application", "ResNet50", "exactly when --config.model.init_che"),
        ("model", "aux_loss_weight", -0.4, "--config.model.aux_loss_weight=-0.4: expected >= 0"),
        ("runtime", "profile_steps", (5,), "--config.runtime.profile_steps=(5,): expected (first"),
        ("runtime", "keep_checkpoints", 0, "--config.runtime.keep_checkpoints=0: expected >= 1"),
    ],
)
def test_validate_names_the_training_flag(section, field, value, expected):
    config = config_lib.Config()
    setattr(getattr(config, section), field, value)
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    assert expected in str(error.value)


def test_resolve_derives_the_training_schedule():
    config = config_lib.Config()
    config.train.batch_size = 100
    config.train.epochs = 10
    config.train.optimizer = "rmsprop"
    config.train.lr_schedule = "step"
    config.train.lr_decay_epochs = (3, 6.5)
    config.train.freeze_backbone_epochs = 1.5
    config.train.second_stage_epochs = 2
    config.train.second_stage_base_learning_rate = 0.02
    resolved, derived = _resolve(config)  # 10 steps per epoch
    assert resolved.train.epsilon == 1e-3  # rmsprop's own
    assert resolved.train.lr_decay_rate == 0.1  # step's own
    assert derived.lr_decay_steps == (30, 65)
    assert derived.freeze_backbone_steps == 15
    assert derived.second_stage_step == 80
    assert derived.second_stage_learning_rate == pytest.approx(0.02 * 100 / 256)
    assert derived.lr_decay_interval_steps == pytest.approx(24)
