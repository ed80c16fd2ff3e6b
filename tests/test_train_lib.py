"""train_lib.run wiring, in-process on the tiny model: EMA, plateau, best checkpoint,
TensorBoard, profiler, zero-γ, transfer with a new head and a frozen backbone, two optimizer
stages, distillation, the auxiliary head, every data option, and load_trained_model."""

import io
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from helpers import as_torchvision_resnet, randomize, write_safetensors
from PIL import Image

from official import config as config_lib
from official import runs, train_lib
from official.data import pipeline, sources
from official.errors import UserError
from official.models import port_keras_applications_weights, registry
from official.training import transfer


def _config(**sections) -> config_lib.Config:
    config = config_lib.Config()
    config.model.name = tiny.NAME
    config.model.num_classes = 4
    config.data.source = "synthetic"
    config.data.synthetic_examples = 64
    config.data.image_size = 16
    config.train.batch_size = 16  # 4 steps per epoch
    config.train.epochs = 3
    config.train.base_learning_rate = 0.4
    config.runtime.distribution_strategy = "one_device"
    config.runtime.log_every_steps = 2
    config.runtime.summary_images = 4
    for section, values in sections.items():
        for name, value in values.items():
            setattr(getattr(config, section), name, value)
    return config


def _tags(directory: pathlib.Path) -> tuple[set, bool]:
    tags, graph = set(), False
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            graph = graph or bool(event.graph_def)
            tags |= {value.tag for value in event.summary.value}
    return tags, graph


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("ema_run")
    config = _config(
        train={"ema_decay": 0.9, "lr_schedule": "plateau", "plateau_patience": 1},
        runtime={"profile_steps": (2, 3)},
    )
    metrics = train_lib.run(config, str(model_dir))
    return model_dir, metrics


def test_run_keeps_ema_best_checkpoint_and_tensorboard(ema_run):
    model_dir, metrics = ema_run
    assert metrics["ema"] is True and metrics["epochs"] == 3 and metrics["steps"] == 12
    best = json.loads((model_dir / "checkpoints/best/best.json").read_text())
    assert best["top1"] == pytest.approx(metrics["best_top1"]) and best["top1"] >= metrics["top1"]
    assert runs.best_checkpoint(str(model_dir)).endswith(f"ckpt-{best['step']}")
    train_tags, graph = _tags(model_dir / "train")
    assert graph
    assert {
        "loss",
        "top1",
        "top5",
        "learning_rate",
        "images_per_second",
        "step_time_seconds",
        "input_wait_seconds",
        "augmented_images",
    } <= train_tags
    assert {"loss", "top1", "top5"} <= _tags(model_dir / "validation")[0]
    assert list((model_dir / "train/plugins/profile").glob("*/*.xplane.pb"))
    # The saved config records the run; plateau state and EMA are in the checkpoint.
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["config"]["train"]["lr_decay_rate"] == 0.1  # the plateau default, resolved
    names = {n.split("/")[0] for n, _ in tf.train.list_variables(str(model_dir / "checkpoints"))}
    assert {"model", "ema", "optimizer", "step", "plateau", "iterator", "best_top1"} <= names


def test_load_trained_model_gives_ema_weights_unless_asked_for_the_raw_ones(ema_run):
    model_dir, metrics = ema_run
    averaged, config, derived, path = runs.load_trained_model(str(model_dir))
    raw, *_ = runs.load_trained_model(str(model_dir), ema=False)
    assert path.endswith(f"ckpt-{derived.total_steps}")
    assert any(not np.allclose(a, b) for a, b in zip(averaged.get_weights(), raw.get_weights()))
    # Evaluating the loaded EMA model reproduces the run's (EMA) validation metrics.
    source = sources.open_source("synthetic", num_classes=4, synthetic_examples=64)
    dataset = pipeline.build_dataset(
        source, split="validation", batch_size=64, geometry=runs.geometry(config)
    )
    images, labels = next(iter(dataset))
    logits = averaged(tf.cast(images, tf.float32)).numpy()
    assert float((logits.argmax(-1) == labels.numpy()).mean()) == pytest.approx(metrics["top1"])


def test_zero_gamma_switch_reaches_the_model():
    config, _ = config_lib.resolve(
        _config(model={"zero_gamma": True}),
        spec=registry.get(tiny.NAME),
        num_classes=4,
        num_train_examples=64,
        num_eval_examples=64,
    )
    model = runs.build_model(config)
    assert not np.any(model.get_layer("block2_bn").gamma.numpy())
    assert np.all(model.get_layer("block1_bn").gamma.numpy() == 1)


def test_transfer_with_new_head_frozen_backbone_and_two_stages(ema_run, tmp_path):
    source_dir, _ = ema_run
    config = _config(
        model={"num_classes": 3, "init_weights": str(source_dir)},
        train={
            "epochs": 2,
            "optimizer": "adam",
            "base_learning_rate": 0.01,
            "freeze_backbone_epochs": 1,
            "backbone_lr_multiplier": 0.1,
            "second_stage_epochs": 1,
            "second_stage_optimizer": "sgd",
            "second_stage_base_learning_rate": 0.1,
            "gradient_accumulation_steps": 2,
            "clip_gradient_norm": 1.0,
            "label_smoothing": 0.1,
        },
        runtime={"summary_images": 0},
    )
    metrics = train_lib.run(config, str(tmp_path))
    assert metrics["steps"] == 8
    source, *_ = runs.load_trained_model(str(source_dir))  # EMA weights: the init
    after_freeze = tiny.tiny_cnn(num_classes=3, image_size=16)
    runs.restore_weights(after_freeze, str(tmp_path / "checkpoints/ckpt-4"))
    for name in ("block1_conv", "block1_bn", "block2_conv", "block2_bn"):
        for a, b in zip(after_freeze.get_layer(name).weights, source.get_layer(name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    final, *_ = runs.load_trained_model(str(tmp_path))
    assert final.output.shape[-1] == 3
    assert not np.allclose(
        final.get_layer("block1_conv").kernel.numpy(),
        source.get_layer("block1_conv").kernel.numpy(),
    )
    # Adam ran the first 4 steps, SGD the last 4.
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints/ckpt-8"))
    iterations = {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if "iterations" in key
    }
    assert sorted(int(v) for v in iterations.values()) == [4, 4]


def test_freeze_stages_reaches_the_trainer_and_too_many_write_nothing(tmp_path):
    config = _config(train={"freeze_stages": 3})
    with pytest.raises(UserError, match=r"^--config.train.freeze_stages=3: tiny_cnn "):
        train_lib.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_distillation_from_a_run_and_an_auxiliary_head(ema_run, tmp_path):
    teacher_dir, _ = ema_run
    config = _config(
        model={"aux_loss_weight": 0.4},
        train={"epochs": 1, "distill_checkpoint": str(teacher_dir), "distill_temperature": 2.0},
        runtime={"summary_images": 0},
    )
    metrics = train_lib.run(config, str(tmp_path))
    assert metrics["steps"] == 4
    model, *_ = runs.load_trained_model(str(tmp_path))
    assert isinstance(model.output, keras.KerasTensor) and model.output.shape[-1] == 4

    # The teacher function is the teacher run's (EMA) model, also from a SavedModel export.
    resolved, _ = config_lib.resolve(
        config,
        spec=registry.get(tiny.NAME),
        num_classes=4,
        num_train_examples=64,
        num_eval_examples=64,
    )
    teacher = train_lib.build_teacher(resolved)
    expected_model, *_ = runs.load_trained_model(str(teacher_dir))
    images = tf.random.uniform([2, 16, 16, 3], 0, 255)
    expected = expected_model(images, training=False).numpy()
    np.testing.assert_allclose(teacher(images).numpy(), expected, atol=1e-5)
    export = tmp_path / "teacher_saved_model"
    expected_model.export(str(export), verbose=False)
    resolved.train.distill_checkpoint = str(export)
    np.testing.assert_allclose(
        train_lib.build_teacher(resolved)(images).numpy(), expected, atol=1e-5
    )


@pytest.mark.slow  # A full-size MobileNetV2 saved as .h5 and ported: the default suite's budget.
def test_transfer_from_a_keras_applications_h5_file(tmp_path):
    """A keras.applications weights file (random weights here; the official ImageNet .h5 for
    users) starts a run through the zoo's port: the frozen backbone keeps exactly the ported
    weights, the head is new, and the run records the normalization the weights need."""
    application = keras.applications.MobileNetV2(weights=None)
    rng = np.random.default_rng(0)
    for variable in application.weights:  # Not the initializer's values: a real check.
        if "moving_variance" in variable.path:
            values = rng.uniform(0.5, 1.5, variable.shape)
        else:
            values = rng.normal(0, 0.1, variable.shape)
        variable.assign(values.astype("float32"))
    weights_file = tmp_path / "mobilenet_v2.weights.h5"
    application.save_weights(weights_file)
    config = _config(
        model={
            "name": "mobilenet_v2",
            "num_classes": 4,
            # The architecture of the .h5 is the model's keras.applications counterpart.
            "init_weights": str(weights_file),
        },
        data={"image_size": 32},
        train={"epochs": 2, "freeze_backbone_epochs": 1},
        runtime={"summary_images": 0},
    )
    train_lib.run(config, str(tmp_path / "run"))  # 4 steps per epoch
    saved, _ = runs.load_config(str(tmp_path / "run"))
    assert saved.data.mean == saved.data.std == (127.5, 127.5, 127.5)  # keras "tf" mode
    ported = registry.get("mobilenet_v2").build(image_size=224)
    port_keras_applications_weights(application, ported)
    after_freeze = str(tmp_path / "run" / "checkpoints" / "ckpt-4")
    trained, *_ = runs.load_trained_model(str(tmp_path / "run"), checkpoint=after_freeze, ema=False)
    compared = 0
    for layer in trained.layers:
        if not layer.weights or layer.name in ("predictions", "input_normalization"):
            continue
        for a, b in zip(layer.weights, ported.get_layer(layer.name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
            compared += 1
    assert compared > 200
    assert trained.get_layer("predictions").kernel.shape[-1] == 4


def test_transfer_from_pytorch_weights_in_a_safetensors_file(tmp_path):
    """A torchvision-layout state dict (a ResNet-18's, 10 classes) starts a 4-class run: the
    format and layout are detected, the backbone is ported and frozen exactly, the head is
    new, and the run records the ImageNet normalization torchvision's weights need."""
    source = registry.get("resnet18").build(image_size=32, width_multiplier=0.25, num_classes=10)
    randomize(source)
    weights = as_torchvision_resnet(source)
    path = tmp_path / "resnet18.safetensors"
    write_safetensors(path, weights)
    assert transfer.weights_format(str(path)) == "safetensors"
    config = _config(
        model={"name": "resnet18", "width_multiplier": 0.25, "init_weights": str(path)},
        data={"image_size": 32},
        train={"epochs": 2, "freeze_backbone_epochs": 1},
        runtime={"summary_images": 0},
    )
    train_lib.run(config, str(tmp_path / "run"))
    saved, _ = runs.load_config(str(tmp_path / "run"))
    assert saved.data.mean == pytest.approx(registry.IMAGENET_MEAN)
    assert saved.data.std == pytest.approx(registry.IMAGENET_STD)
    # PyTorch's arithmetic, recorded so that every rebuild (resume, evaluate, export) has it.
    assert (saved.model.padding, saved.model.norm_epsilon) == ("torch", 1e-5)
    after_freeze = str(tmp_path / "run" / "checkpoints" / "ckpt-4")
    trained, *_ = runs.load_trained_model(str(tmp_path / "run"), checkpoint=after_freeze, ema=False)
    np.testing.assert_array_equal(
        trained.get_layer("conv2_block1_1_conv").kernel.numpy(),
        source.get_layer("conv2_block1_1_conv").kernel.numpy(),
    )
    assert trained.get_layer("predictions").kernel.shape[-1] == 4
    bad = tmp_path / "notes.txt"
    bad.write_text("not weights")
    config.model.init_weights = str(bad)
    with pytest.raises(config_lib.ConfigError, match=r"init_weights=.*notes.txt: .*not a run"):
        train_lib.run(config, str(tmp_path / "run2"))
    assert not (tmp_path / "run2").exists()


def test_training_run_with_every_data_option(tmp_path, caplog):
    """train_lib.run on a tiny imbalanced folder: augmentations, mixing, class weights and
    re-sampling reach the loop, and the run writes its usual files."""
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
    config.data.random_vertical_flip = True
    config.data.color_jitter = 0.4
    config.data.hue_jitter = 0.4
    config.data.pca_lighting = 0.1
    config.data.mixup_alpha = 0.2
    config.data.cutmix_alpha = 1.0
    config.data.class_weights = "effective_number"
    config.data.resample = "oversample"
    config.data.resample_exponent = 0.5
    config.train.batch_size = 8
    config.train.epochs = 2
    config.train.label_smoothing = 0.1
    config.train.label_smoothing_formula = "wrong_classes"
    config.runtime.log_every_steps = 1
    with caplog.at_level("INFO", logger="absl"):
        metrics = train_lib.run(config, str(tmp_path / "run"))
    assert "training examples per class: 2 classes, 16 examples; min 4 (class1)" in caplog.text
    assert "augmenting only 1 rare classes: [1]" in caplog.text
    assert metrics["steps"] == 4 and metrics["eval_examples"] == 6
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["data"]
    assert saved["augment"] == ["rotation", "random_erasing"]
    assert saved["train_crop"] == "inception"


def test_auto_precision_times_the_fused_model_once_for_it_and_its_average(
    tmp_path, caplog, monkeypatch
):
    """`runtime.precision=auto` on a bfloat16 CPU: the candidates are timed once, on the model
    with its fused batch norm, at the per-replica batch (capped); the model and its EMA copy
    both get the fastest candidate's dtypes; the run trains."""
    from official.models import batch_norm
    from official.training import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    measured, real = [], precision.measure_candidates

    def measure(model, *args):
        measured.append(([type(layer) for layer in model.layers if "bn" in layer.name], *args))
        return real(model, *args, repeats=1)

    monkeypatch.setattr(precision, "measure_candidates", measure)
    config = _config(train={"ema_decay": 0.9, "epochs": 1}, runtime={"precision": "auto"})

    def run_logged():
        caplog.clear()
        try:
            with caplog.at_level("INFO", logger="absl"):
                return train_lib.run(config, str(tmp_path / "run"))
        finally:
            keras.mixed_precision.set_global_policy("float32")

    metrics = run_logged()
    assert len(measured) == 1
    bn_types, policy, candidates, batch, training = measured[0]
    assert set(bn_types) == {batch_norm.FusedBatchNormalization}
    assert (policy, list(candidates), batch, training) == (
        "mixed_bfloat16", ["bfloat16", "float32"], 8, True
    )  # fmt: skip
    chosen = caplog.text.split("precision auto → ")[-1].split(";")[0]
    assert chosen in candidates
    assert caplog.text.count("precision per layer: ") == 2  # The model and its average.
    assert metrics["steps"] == 4 and np.isfinite(metrics["loss"])
    # The choice is recorded, and a resumed run computes as the run started: not timed again.
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["derived"]["precision"] == metrics["precision"] == f"auto: {chosen}"
    config.train.epochs = 2
    resumed = run_logged()
    assert len(measured) == 1
    assert f"precision auto → {chosen} (recorded by the run; not timed again)" in caplog.text
    assert caplog.text.count("precision per layer: ") == 2
    assert resumed["steps"] == 8 and resumed["precision"] == f"auto: {chosen}"


def test_auto_precision_refuses_deterministic_runs_on_a_bfloat16_cpu(tmp_path, monkeypatch):
    from official.training import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    config = _config(runtime={"precision": "auto", "deterministic": True})
    with pytest.raises(config_lib.ConfigError, match="deterministic cannot hold"):
        train_lib.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_resumed_auto_run_takes_its_recorded_choice_only_with_one_worker(
    tmp_path, monkeypatch, caplog
):
    from official.training import precision
    from official.training import strategy as strategy_lib

    derived = config_lib.Derived(
        num_classes=4,
        num_train_examples=64,
        num_eval_examples=16,
        learning_rate=0.1,
        steps_per_epoch=4,
        total_steps=12,
        warmup_steps=0,
        eval_batch_size=16,
        precision="auto: float32",
    )
    runs.save_config(str(tmp_path), _config(), derived)
    auto = precision.Precision(precision.BFLOAT16, tune=True)
    for workers, expected in ((1, "auto: float32"), (2, "mixed_bfloat16")):
        monkeypatch.setattr(strategy_lib, "worker_index_and_count", lambda s, n=workers: (0, n))
        caplog.clear()
        with caplog.at_level("WARNING", logger="absl"):
            resumed = train_lib._resumed_precision(auto, str(tmp_path), strategy=None)
        assert resumed.name == expected
        assert ("several workers; timing again" in caplog.text) == (workers > 1)
    monkeypatch.setattr(strategy_lib, "worker_index_and_count", lambda s: (0, 1))
    with caplog.at_level("WARNING", logger="absl"):
        assert train_lib._resumed_precision(auto, str(tmp_path / "none"), None) is auto
    assert "the run recorded no choice; timing again" in caplog.text
