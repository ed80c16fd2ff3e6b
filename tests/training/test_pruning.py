"""Magnitude pruning (Zhu & Gupta arXiv 1710.01878): the cubic schedule, exact per-kernel
sparsity at the end step, which kernels are pruned, exact resume with the masks in the
checkpoint, mirrored replicas, and a trained run whose SavedModel and TFLite exports hold the
zeros."""

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from helpers import synthetic_config

from official import config as config_lib
from official import export_lib, runs, train_lib
from official.serving import tflite
from official.training import loop, pruning, summaries

TESTS = pathlib.Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def _formula(t, s_i, s_f, t0, n, dt):
    """Zhu & Gupta Eq. 1, transcribed: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³."""
    return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3


def test_schedule_is_the_cubic_formula_on_its_update_steps():
    schedule = pruning.Schedule(
        target_sparsity=0.9, initial_sparsity=0.1, begin_step=20, end_step=70, frequency=10
    )
    updates = [t for t in range(0, 100) if schedule.is_update_step(t)]
    assert updates == [20, 30, 40, 50, 60, 70]
    for t in updates:
        want = _formula(t, 0.1, 0.9, 20, 5, 10)
        assert schedule.sparsity(t) == pytest.approx(want, abs=1e-12)
        assert float(schedule.sparsity(tf.constant(t, tf.int64))) == pytest.approx(want, abs=1e-6)
    assert schedule.sparsity(0) == pytest.approx(0.1) and schedule.sparsity(99) == 0.9
    # The end step is an update step even off the frequency grid.
    odd = pruning.Schedule(target_sparsity=0.5, begin_step=0, end_step=25, frequency=10)
    assert [t for t in range(40) if odd.is_update_step(t)] == [0, 10, 20, 25]
    as_tensors = [bool(odd.is_update_step(tf.constant(t, tf.int64))) for t in range(40)]
    assert [t for t, due in enumerate(as_tensors) if due] == [0, 10, 20, 25]


def test_magnitude_mask_zeroes_exactly_the_smallest_weights():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    for sparsity in (0.0, 0.3, 0.5, 0.97):
        mask = pruning.magnitude_mask(tf.constant(kernel), tf.constant(sparsity)).numpy()
        num_zeros = round(sparsity * kernel.size)
        assert int((mask == 0).sum()) == num_zeros
        order = np.argsort(np.abs(kernel).ravel())
        np.testing.assert_array_equal(mask.ravel()[order[:num_zeros]], 0)
        np.testing.assert_array_equal(mask.ravel()[order[num_zeros:]], 1)


def _mixed_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.SeparableConv2D(6, 1, name="sep")(x)
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="fc")(x)
    return keras.Model(inputs, outputs)


def test_default_kinds_leave_the_first_conv_and_depthwise_kernels_alone():
    model = _mixed_model()
    paths = lambda kinds: [k.path for k in pruning.prunable_kernels(model, kinds)]  # noqa: E731
    assert paths(pruning.DEFAULT_KINDS) == ["sep/pointwise_kernel", "pw/kernel", "fc/kernel"]
    assert paths(pruning.KINDS) == [
        "stem/kernel",
        "dw/kernel",
        "sep/depthwise_kernel",
        "sep/pointwise_kernel",
        "pw/kernel",
        "fc/kernel",
    ]
    assert pruning.parse_kinds(("conv,dense", "depthwise")) == ("conv", "dense", "depthwise")
    with pytest.raises(ValueError, match="unknown layer kind 'bias'"):
        pruning.parse_kinds(("bias",))


def test_layers_frozen_for_the_run_are_not_pruned_in_the_model_or_its_shadow():
    strategy = tf.distribute.get_strategy()
    model, shadow = _mixed_model(), _mixed_model()
    # Stages by name prefix: stem, dw, sep, pw; "fc" is the head.
    backbone = loop.Backbone(head_layers=("fc",), freeze_stages=3)
    frozen = loop.frozen_layers(model, backbone)
    assert [layer.name for layer in frozen] == ["stem", "dw", "sep"]
    schedule = pruning.Schedule(target_sparsity=0.5, end_step=1)
    pruner = pruning.Pruner(
        model,
        schedule=schedule,
        kinds=pruning.KINDS,
        strategy=strategy,
        shadows=(shadow,),
        frozen=frozen,
    )
    assert [k.path for k in pruner.kernels] == ["pw/kernel", "fc/kernel"]
    assert [[k.path for k in kernels] for kernels in pruner._shadow_kernels] == [
        ["pw/kernel", "fc/kernel"]
    ]
    stem = model.get_layer("stem").kernel.numpy().copy()
    pruner.prune(tf.constant(1))
    assert np.array_equal(model.get_layer("stem").kernel.numpy(), stem)
    for kernel in (model.get_layer("pw").kernel, shadow.get_layer("pw").kernel):
        assert np.mean(kernel.numpy() == 0) == 0.5
    everything = loop.Backbone(head_layers=("fc",), freeze_stages=4)
    with pytest.raises(ValueError, match="no kernel of the kinds conv outside its frozen stages"):
        pruning.Pruner(
            model,
            schedule=schedule,
            kinds=("conv",),
            strategy=strategy,
            frozen=loop.frozen_layers(model, everything),
        )


def _pruned_trainer(schedule, kinds=pruning.KINDS):
    images, labels = tiny.batches(num_examples=32, image_size=4)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    keras.utils.set_random_seed(1)
    trainer = tiny.make_trainer(strategy, tiny.dense_model, images, labels, batch_size=8)
    with strategy.scope():
        trainer.pruner = pruning.Pruner(
            trainer.model, schedule=schedule, kinds=kinds, strategy=strategy
        )
    return trainer


def test_each_kernel_follows_the_schedule_and_reaches_the_target_at_the_end_step():
    schedule = pruning.Schedule(target_sparsity=0.8, begin_step=2, end_step=7, frequency=2)
    trainer = _pruned_trainer(schedule)
    kernels = {k.path: k for k in trainer.pruner.kernels}
    assert sorted(kernels) == ["hidden/kernel", "predictions/kernel"]
    for step in range(1, 10):
        trainer.train_steps(1)
        due = max([t for t in (2, 4, 6, 7) if t <= step], default=None)
        for path, kernel in kernels.items():
            size = int(np.prod(kernel.shape))
            want = 0 if due is None else round(schedule.sparsity(due) * size)
            zeros = int((kernel.numpy() == 0).sum())
            assert zeros == want, (step, path)
            assert trainer.pruner.sparsities()[path] == want / size
    assert trainer.pruner.sparsities()["hidden/kernel"] == round(0.8 * 48 * 6) / (48 * 6)


def _checkpointer(trainer, directory):
    return runs.Checkpointer(
        str(directory),
        keep=10,
        model=trainer.model,
        step=trainer.step,
        optimizer=trainer.stages[0].optimizer,
        iterator=trainer.inputs.iterator,
        pruning=trainer.pruner.masks,
    )


def test_resuming_mid_pruning_from_a_checkpoint_is_bit_exact(tmp_path):
    schedule = pruning.Schedule(target_sparsity=0.7, begin_step=1, end_step=9, frequency=3)

    def fit(trainer, total):
        return loop.fit(
            trainer,
            schedule=loop.Schedule(total_steps=total, steps_per_epoch=2, log_every_steps=1),
            evaluate=lambda: {"loss": 0.0, "top1": 0.0, "top5": 0.0, "examples": 0},
            checkpointer=_checkpointer(trainer, tmp_path),
            summaries=summaries.Summaries(str(tmp_path)),
        )

    reference = _pruned_trainer(schedule)
    fit(reference, 12)
    # "Killed" after the checkpoint of step 6 (between mask updates 4 and 7): a fresh process
    # restores it and trains on.
    resumed = _pruned_trainer(schedule)
    checkpointer = _checkpointer(resumed, tmp_path)
    checkpointer._restore(str(tmp_path / "checkpoints" / "ckpt-6"))
    assert resumed.current_step == 6
    assert resumed.pruner.sparsities()["hidden/kernel"] > 0
    fit(resumed, 12)
    assert loop.weights_fingerprint(resumed.model) == loop.weights_fingerprint(reference.model)
    masks = resumed.pruner.masks.by_path, reference.pruner.masks.by_path
    for got, want in zip(*(m.values() for m in masks)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    tags = set()
    for path in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {value.tag for value in event.summary.value}
    assert {"sparsity/hidden/kernel", "sparsity/predictions/kernel", "sparsity/total"} <= tags


# Runs in a fresh process: the logical CPUs must be configured before TensorFlow starts.
MIRRORED = textwrap.dedent(
    """
    import numpy as np, keras, tensorflow as tf
    from official.training import strategy as strategy_lib
    strategy_lib.configure_cpu_devices(2)
    import tiny
    from official.training import pruning

    images, labels = tiny.batches(num_examples=32, image_size=4)
    keras.utils.set_random_seed(0)
    initial = tiny.dense_model().get_weights()
    schedule = pruning.Schedule(target_sparsity=0.6, begin_step=1, end_step=4, frequency=1)
    kernels = {}
    for name, strategy in [
        ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
        ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    ]:
        trainer = tiny.make_trainer(
            strategy, tiny.dense_model, images, labels, batch_size=8, initial_weights=initial
        )
        with strategy.scope():
            trainer.pruner = pruning.Pruner(
                trainer.model, schedule=schedule, kinds=pruning.KINDS, strategy=strategy
            )
        trainer.train_steps(5)
        kernel = trainer.model.get_layer("hidden").kernel
        copies = strategy.experimental_local_results(kernel.value)
        masks = strategy.experimental_local_results(trainer.pruner.masks.by_path[kernel.path])
        kernels[name] = copies[0].numpy()
        print(name, "copies_equal", all(np.array_equal(copies[0], c) for c in copies),
              "masks_equal", all(np.array_equal(masks[0], m) for m in masks),
              "zeros", int((copies[0].numpy() == 0).sum()), "of", copies[0].numpy().size)
    print("max_difference", float(np.abs(kernels["one_device"] - kernels["mirrored"]).max()))
    """
)


@pytest.mark.slow  # A fresh process (~25 s); the default suite tests one device.
def test_mirrored_replicas_prune_alike_and_as_one_device():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{TESTS}", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    zeros = ["zeros", str(round(0.6 * 48 * 6)), "of", str(48 * 6)]
    assert values["one_device"] == ["copies_equal", "True", "masks_equal", "True", *zeros]
    assert values["mirrored"] == ["copies_equal", "True", "masks_equal", "True", *zeros]
    assert float(values["max_difference"][0]) <= 1e-5


def test_config_validates_and_derives_the_pruning_steps():
    config = config_lib.Config()
    config.train.epochs = 10
    config.prune.target_sparsity = 0.5
    config.prune.begin_epochs = 2
    config.prune.end_epochs = 12
    with pytest.raises(config_lib.ConfigError, match="--config.prune.end_epochs=12"):
        config_lib.validate(config)
    config.prune.end_epochs = 0
    config.prune.layers = ("conv,weights",)
    with pytest.raises(config_lib.ConfigError, match="--config.prune.layers"):
        config_lib.validate(config)
    config.prune.initial_sparsity = 0.6
    config.prune.layers = ("conv",)
    with pytest.raises(config_lib.ConfigError, match="--config.prune.initial_sparsity=0.6"):
        config_lib.validate(config)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("pruned_run")
    # 4 steps per epoch.
    config = synthetic_config(tiny.NAME, num_classes=4, examples=64, image_size=16, epochs=2)
    config.train.base_learning_rate = 0.4
    config.train.ema_decay = 0.9
    config.runtime.log_every_steps = 4
    config.runtime.eval_every_epochs = 0
    config.prune.target_sparsity = 0.75
    config.prune.end_epochs = 1.5
    config.prune.frequency_steps = 2
    train_lib.run(config, str(model_dir))
    return model_dir


def test_a_pruned_run_checkpoints_its_masks_and_exports_the_zeros(pruned_run, tmp_path):
    _, derived = runs.load_config(str(pruned_run))
    assert (derived.prune_begin_step, derived.prune_end_step) == (0, 6)
    latest = runs.latest_checkpoint(str(pruned_run))
    assert pruning.CHECKPOINT_KEY in runs.saved_objects(latest)
    for ema in (True, False):  # The EMA copy, which evaluation and export use, is masked too.
        model = runs.load_trained_model(str(pruned_run), ema=ema).model
        assert pruning.kernel_sparsities(model) == {
            "block1_conv/kernel": 0.0,  # The first convolution is not pruned by default.
            "block2_conv/kernel": 0.75,
            "predictions/kernel": 0.75,
        }
    saved = export_lib.export(str(pruned_run), str(tmp_path / "saved"))
    variables = tf.train.load_checkpoint(os.path.join(saved, "variables", "variables"))
    shapes = variables.get_variable_to_shape_map()
    pruned = [n for n, s in shapes.items() if s == [3, 3, 8, 16] or s == [16, 4]]
    assert len(pruned) == 2  # No mask variables were exported, only the kernels...
    for name in pruned:  # ...which hold the zeros.
        assert np.mean(variables.get_tensor(name) == 0) == 0.75
    path = export_lib.export(str(pruned_run), str(tmp_path / "tflite"), export_format="tflite")
    interpreter = tflite.TFLiteClassifier(path).interpreter
    sparsities = sorted(
        float(np.mean(interpreter.get_tensor(d["index"]) == 0))
        for d in interpreter.get_tensor_details()
        if d["shape"].tolist() in ([16, 3, 3, 8], [4, 16])  # TFLite's OHWI and (out, in).
    )
    assert sparsities == [0.75, 0.75]
    size, compressed = export_lib.export_size(path)
    assert size == os.path.getsize(path) and 0 < compressed < size
