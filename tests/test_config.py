"""The configuration: validate() names the flag, resolve() derives every value, and each
field with a fixed set of values takes them from the module that implements it."""

import dataclasses

import pytest

from official import config as config_lib
from official.data import augment, catalog
from official.models import registry


def _resolve(config, spec=None, **kwargs):
    values = dict(num_classes=10, num_train_examples=1000, num_eval_examples=200)
    values.update(kwargs)
    return config_lib.resolve(config, spec=spec or registry.get("resnet50"), **values)


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


def test_batch_sizes_must_divide_into_replicas_and_accumulation_steps():
    config = config_lib.Config()
    config.train.batch_size = 96
    config.train.gradient_accumulation_steps = 3
    _, derived = _resolve(config, num_replicas=2)  # 2 replicas × 3 micro-batches of 16
    assert derived.eval_batch_size == 96
    with pytest.raises(config_lib.ConfigError, match="batch_size=96: not divisible by 5 replicas"):
        _resolve(config, num_replicas=5)
    config.train.gradient_accumulation_steps = 1
    config.train.eval_batch_size = 99
    with pytest.raises(config_lib.ConfigError, match="eval_batch_size=99: not divisible by 2"):
        _resolve(config, num_replicas=2)


def test_initial_weights_bring_their_normalization_and_determinism_its_input_order():
    config = config_lib.Config()
    config.data.mean = (1.0, 2.0, 3.0)
    config.runtime.deterministic = True
    resolved, _ = _resolve(config, weights_normalization=((127.5,) * 3, (127.5,) * 3))
    assert resolved.data.mean == resolved.data.std == (127.5, 127.5, 127.5)
    assert resolved.data.deterministic  # runtime.deterministic implies the input order


def test_a_second_optimizer_brings_its_own_epsilon():
    config = config_lib.Config()
    config.train.optimizer = "sgd"
    config.train.second_stage_optimizer = "adam"
    config.train.second_stage_epochs = 10
    config.train.second_stage_base_learning_rate = 0.01
    resolved, derived = _resolve(config, num_train_examples=25_600)
    assert resolved.train.epsilon == 0.0 and derived.second_stage_epsilon == 1e-8


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
            "sgdw",
            "--config.train.optimizer='sgdw': expected one of sgd",
        ),
        ("train", "bound_gamma", 1.0, "--config.train.bound_gamma=1.0: expected in [0, 1)"),
        ("train", "final_learning_rate", 0.0, "--config.train.final_learning_rate=0.0: expected"),
        ("train", "adadelta_decay", 1.0, "--config.train.adadelta_decay=1.0: expected in [0, 1)"),
        ("train", "adagrad_initial_accumulator", -1.0, "adagrad_initial_accumulator=-1.0: exp"),
        ("train", "label_smoothing_formula", "k-1", "label_smoothing_formula='k-1': expected one"),
        ("train", "lr_schedule", "step", "--config.train.lr_decay_epochs=(): expected increasing"),
        ("train", "ema_decay", 1.0, "--config.train.ema_decay=1.0: expected in [0, 1)"),
        ("train", "second_stage_epochs", 5.0, "second_stage_base_learning_rate=0.0: expected > 0"),
        ("train", "distill_teacher", "resnet50", "the teacher's weights for --config.train.dis"),
        ("train", "freeze_backbone_epochs", 90.0, "freeze_backbone_epochs=90.0: expected < "),
        ("train", "freeze_stages", -1, "--config.train.freeze_stages=-1: expected >= 0"),
        ("model", "init_keras_application", "ResNet50", "unset unless --config.model.init_weig"),
        ("model", "init_weights_format", "pickle", "init_weights_format='pickle': expected one"),
        ("model", "init_weights_layout", "timm", "expected unset without --config.model.init_w"),
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


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("augment", ("randaugment", "mixup"), "unknown augmentation 'mixup'"),
        ("train_crop", "random", "--config.data.train_crop='random'"),
        ("scale_jitter", (512, 256), "--config.data.scale_jitter=(512, 256)"),
        ("color_jitter", 1.5, "--config.data.color_jitter=1.5: expected in [0, 1)"),
        ("mixup_alpha", -0.2, "--config.data.mixup_alpha=-0.2"),
        ("ricap_beta", -0.3, "--config.data.ricap_beta=-0.3: expected >= 0"),
        ("hue_jitter", 1.5, "--config.data.hue_jitter=1.5: expected in [0, 1]"),
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


def test_ricap_is_not_combined_with_mixup_or_cutmix():
    config = config_lib.Config()
    config.data.ricap_beta = 0.3
    config_lib.validate(config)
    for field in ("mixup_alpha", "cutmix_alpha"):
        config = config_lib.Config()
        config.data.ricap_beta = 0.3
        setattr(config.data, field, 0.2)
        with pytest.raises(config_lib.ConfigError, match="--config.data.ricap_beta=0.3"):
            config_lib.validate(config)


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


def test_choices_and_parameters_are_those_of_the_implementations():
    """Every choice of every field is implemented, and every flag default is a valid value:
    the flags and the implementing modules cannot drift apart."""
    import tensorflow as tf

    from official.data import balance, preprocess
    from official.training import losses, optimizers, precision, schedules, strategy

    choices = config_lib.choices()
    defaults = config_lib.Config()
    for flag, valid in choices.items():
        section, field = flag.split(".")
        default = getattr(getattr(defaults, section), field)
        assert default in valid or (section == "data" and default == ""), flag
    for name in choices["train.optimizer"]:
        assert optimizers.create_optimizer(name) is not None
        assert name in optimizers.DECAY_RULES
    for name in choices["train.lr_schedule"]:
        assert float(schedules.WarmupSchedule(0.1, 100, decay=name, boundaries=(50,))(10)) > 0
    assert set(schedules.DEFAULT_DECAY_RATE) <= set(choices["train.lr_schedule"])
    assert set(optimizers.DEFAULT_EPSILON) <= set(choices["train.optimizer"])
    for formula in choices["train.label_smoothing_formula"]:
        loss = losses.cross_entropy(
            tf.constant([0]),
            tf.zeros([1, 3]),
            num_classes=3,
            label_smoothing=0.1,
            label_smoothing_formula=formula,
        )
        assert float(loss[0]) > 0
    image = tf.io.encode_jpeg(tf.zeros([20, 30, 3], tf.uint8))
    for crop in choices["data.train_crop"]:
        for method in choices["data.interpolation"]:
            train = preprocess.TrainPreprocessing(train_crop=crop)
            geometry = preprocess.Geometry(16, 0.875, method)
            assert preprocess.train_image(
                image, tf.constant([1, 2]), geometry=geometry, preprocessing=train
            ).shape == (16, 16, 3)
    for method in choices["data.class_weights"]:
        assert balance.class_weights([3, 1], method, 0.9).shape == (2,)
    for mode in choices["data.resample"]:
        assert balance.resampling_rates([3, 1], exponent=0.0, mode=mode).shape == (2,)
    assert set(choices["runtime.precision"]) == set(precision.PRECISIONS)
    assert set(choices["runtime.distribution_strategy"]) == set(strategy.STRATEGIES)
    # Augmentation parameters and the training preprocessing are --config.data.* fields of the
    # same names, with their one default there.
    data_fields = {f.name for f in dataclasses.fields(config_lib.DataConfig)}
    assert set(augment.parameter_names()) <= data_fields
    assert {f.name for f in dataclasses.fields(preprocess.TrainPreprocessing)} <= data_fields


def test_builder_switch_flags_parse_into_the_model_config():
    from official import ablate

    config = ablate.parse_config(
        [
            "--config.model.name=mobilenet_v1",
            "--config.model.normalization=instance",
            "--config.model.activation=selu",
            "--config.model.kernel_initializer=lecun_normal",
            "--config.model.head_batch_norm=true",
            "--config.model.output_stride=16",
            "--config.model.se_ratio=0.125",
            "--config.model.stochastic_depth_rate=0.1",
            "--config.model.resolution_multiplier=0.5",
        ]
    )
    model = config.model
    assert (model.normalization, model.activation) == ("instance", "selu")
    assert model.kernel_initializer == "lecun_normal" and model.head_batch_norm is True
    assert model.output_stride == 16 and isinstance(model.output_stride, int)
    assert (model.se_ratio, model.stochastic_depth_rate) == (0.125, 0.1)
    assert model.resolution_multiplier == 0.5


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("output_stride", 12, "--config.model.output_stride=12: expected 8, 16 or 32"),
        ("se_ratio", 1.5, "--config.model.se_ratio=1.5: expected in [0, 1]"),
        ("stochastic_depth_rate", 1.0, "--config.model.stochastic_depth_rate=1.0: expected"),
        ("resolution_multiplier", -0.5, "--config.model.resolution_multiplier=-0.5: expected"),
        ("normalization", "instnce", "--config.model.normalization='instnce': expected one of"),
        ("activation", "gelu", "--config.model.activation='gelu': expected one of"),
        (
            "kernel_initializer",
            "orthogonal",
            "--config.model.kernel_initializer='orthogonal': expected one of",
        ),
    ],
)
def test_validate_names_the_builder_switch(field, value, expected):
    config = config_lib.Config()
    setattr(config.model, field, value)
    with pytest.raises(config_lib.ConfigError, match="^" + expected.replace("[", r"\[")):
        config_lib.validate(config)


def test_per_sample_normalization_refuses_what_needs_batch_statistics():
    config = config_lib.Config()
    config.model.normalization = "instance"
    config_lib.validate(config)
    config.train.freeze_batch_norm = True
    with pytest.raises(config_lib.ConfigError, match="freeze_batch_norm=True: expected false "):
        config_lib.validate(config)
    config.train.freeze_batch_norm = False
    config.model.init_weights = "resnet50.pth"
    with pytest.raises(config_lib.ConfigError, match="normalization='instance': expected ''"):
        config_lib.validate(config)
    config.model.normalization = "batch"
    config_lib.validate(config)


def test_resolution_multiplier_sets_the_image_size():
    # MobileNetV1's ρ (arXiv 1704.04861 §3.3): 224·ρ px; data.image_size follows, or must agree.
    config = config_lib.Config()
    config.model.name = "mobilenet_v1"
    config.model.resolution_multiplier = 160 / 224
    resolved, _ = _resolve(config, spec=registry.get("mobilenet_v1"))
    assert resolved.data.image_size == 160
    config.data.image_size = 160
    assert _resolve(config, spec=registry.get("mobilenet_v1"))[0].data.image_size == 160
    config.data.image_size = 192
    with pytest.raises(config_lib.ConfigError, match="resolution_multiplier=0.714.*192"):
        config_lib.validate(config)


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("vgg11", "output_stride", 16),
        ("mobilenet_v2", "output_stride", 8),
        ("resnet18", "head_batch_norm", True),
        ("vgg16_bn", "se_ratio", 0.25),
        ("resnet50", "stochastic_depth_rate", 0.1),
        ("mobilenet_v2", "resolution_multiplier", 0.5),
    ],
)
def test_a_switch_the_models_builder_lacks_is_one_line(name, field, value):
    from official import runs

    config = config_lib.Config()
    config.model.name = name
    setattr(config.model, field, value)
    spec = registry.get(name)
    with pytest.raises(config_lib.ConfigError) as error:
        runs.model_overrides(config.model, spec)
    assert str(error.value) == (
        f"--config.model.{field}: not a switch of {name} ({spec.family} family)"
    )


def test_every_family_takes_the_kernel_initializer_and_normalization_flags():
    import inspect

    # The package's own families (tests register tiny models of their own: tests/tiny.py).
    specs = [registry.get(name) for name in registry.names()]
    families = {s.family: s for s in specs if s.builder.__module__.startswith("official.")}
    for spec in families.values():
        parameters = inspect.signature(spec.builder).parameters
        assert {"kernel_initializer", "normalization", "activation"} <= set(parameters), spec.name


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_flag_dilates_the_last_resnet_stages(output_stride):
    from official import runs

    config = config_lib.Config()
    config.model.name = "resnet18"
    config.model.width_multiplier = 0.25
    config.model.output_stride = output_stride
    config.data.image_size = 32
    resolved, _ = _resolve(config, spec=registry.get("resnet18"))
    model = runs.build_model(resolved)
    # 32 px at output stride 8 / 16 (32 gives 1x1): a 4x4 / 2x2 map from dilated convolutions.
    assert model.get_layer("conv5_block2_out").output.shape[1:3] == (32 // output_stride,) * 2
    assert model.get_layer("conv5_block2_1_conv").dilation_rate == (32 // output_stride,) * 2
