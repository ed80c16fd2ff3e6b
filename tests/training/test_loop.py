"""The training loop in-process: precision, loss scaling, NaN stop, SIGTERM, EMA, freezing,
distillation and auxiliary losses, transfer, soft labels and class weights."""

import gc
import os
import signal
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from official import runs
from official.errors import UserError
from official.training import ema, loop, precision, summaries, transfer


def _one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


@pytest.fixture
def policy():
    """Sets a dtype policy for one test and restores float32 afterwards."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_every_precision_trains(policy, name):
    policy(name)
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8),
        images,
        labels,
        batch_size=8,
        gradients=loop.Gradients(
            loss_scale=precision.DynamicLossScale() if name == "mixed_float16" else None
        ),
    )
    totals, _ = trainer.train_steps(2)  # float16 is ~5× slower on CPU: two steps only.
    model = trainer.model
    assert np.isfinite(loop.summarize(totals)["loss"])
    compute = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
    assert model.get_layer("block1_conv").compute_dtype == compute[name]
    # Variables, BN statistics and the logits stay float32.
    assert {w.dtype for w in model.weights} == {"float32"}
    assert model(images[:2].astype("float32")).dtype == "float32"
    bn = model.get_layer("block1_bn")
    assert bn.moving_mean.dtype == "float32"
    assert not np.allclose(bn.moving_mean.numpy(), 0)  # The statistics were updated.
    if name == "mixed_float16":
        assert float(trainer.gradients.loss_scale.scale.numpy()) == 2.0**15
        assert totals[loop._NONFINITE] == 0


def test_float16_overflow_skips_the_step_and_halves_the_scale(policy):
    policy("mixed_float16")
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8),
        images,
        labels,
        batch_size=8,
        # float16's largest value is 65504.
        gradients=loop.Gradients(loss_scale=precision.DynamicLossScale(initial_scale=2.0**40)),
    )
    before = trainer.model.get_weights()
    totals, _ = trainer.train_steps(1)
    assert totals[loop._NONFINITE] == 1
    assert float(trainer.gradients.loss_scale.scale.numpy()) == 2.0**39
    assert trainer.current_step == 1
    trainable = {id(v) for v in trainer.model.trainable_weights}
    for weight, old in zip(trainer.model.weights, before):
        if id(weight) in trainable:
            np.testing.assert_array_equal(weight.numpy(), old)


def _fit(trainer, tmp_path, *, total, per_epoch, evaluate=None, checkpoint_every=0):
    checkpointer = runs.Checkpointer(
        str(tmp_path), model=trainer.model, step=trainer.step, optimizer=trainer.stages[0].optimizer
    )
    result = loop.fit(
        trainer,
        schedule=loop.Schedule(
            total_steps=total,
            steps_per_epoch=per_epoch,
            log_every_steps=1,
            checkpoint_every_steps=checkpoint_every,
        ),
        evaluate=evaluate or (lambda: {"loss": 0.0, "top1": 0.0, "top5": 0.0, "examples": 0}),
        checkpointer=checkpointer,
        summaries=summaries.Summaries(str(tmp_path)),
    )
    return result, checkpointer


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    images, labels = tiny.batches()
    # From the 5th step on, an absurd learning rate makes the weights blow up.
    rate = lambda step: tf.where(step >= 4, 1e30, 0.01)  # noqa: E731
    trainer = tiny.make_trainer(
        _one_device(), tiny.dense_model, images, labels, batch_size=8, rate=rate
    )
    with pytest.raises(FloatingPointError) as error:
        _fit(trainer, tmp_path, total=20, per_epoch=20, checkpoint_every=2)
    message = str(error.value)
    assert "NaN or Inf" in message or "loss is" in message
    assert "ckpt-4" in message and "last good checkpoint" in message
    latest = runs.latest_checkpoint(str(tmp_path))
    assert latest.endswith("ckpt-4")
    model = tiny.dense_model()
    runs.restore_weights(model, latest)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_sigterm_writes_a_checkpoint_then_stops(tmp_path):
    images, labels = tiny.batches()
    trainer = tiny.make_trainer(_one_device(), tiny.dense_model, images, labels, batch_size=8)

    def evaluate():  # The "preemption notice" arrives during the first evaluation.
        os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": 1.0, "top1": 0.5, "top5": 1.0, "examples": 8}

    with pytest.raises(loop.PreemptedError, match="SIGTERM at step 2"):
        _fit(trainer, tmp_path, total=10, per_epoch=2, evaluate=evaluate)
    assert runs.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # Handler removed again.


def test_ema_follows_the_weights_with_a_warming_up_decay():
    images, labels = tiny.batches()
    strategy = _one_device()
    with strategy.scope():
        average_model = tiny.dense_model()
    trainer = tiny.make_trainer(strategy, tiny.dense_model, images, labels, batch_size=8)
    average = ema.ExponentialMovingAverage(
        trainer.model, average_model, decay=0.5, strategy=strategy
    )
    trainer.ema = average
    trainer.eval_model = average_model
    average.reset()
    expected = trainer.model.get_weights()
    for n in range(4):
        trainer.train_steps(1)
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, 0.25, 0.31
        expected = [
            decay * e + (1 - decay) * w for e, w in zip(expected, trainer.model.get_weights())
        ]
    for got, want in zip(average_model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert float(average.decay_at(100)) == 0.5
    # Evaluation uses the averaged weights.
    dataset = strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    )
    result = trainer.evaluate(dataset, 4)
    logits = average_model(images.astype("float32")).numpy()
    assert result["top1"] == pytest.approx(float((logits.argmax(-1) == labels).mean()))


def test_frozen_backbone_trains_only_the_head_with_bn_in_inference_mode():
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8),
        images,
        labels,
        batch_size=8,
        backbone=loop.Backbone(
            head_layers=transfer.head_layer_names(tiny.tiny_cnn(num_classes=3, image_size=8)),
            freeze_steps=2,
        ),
    )
    model = trainer.model
    before = {w.path: w.numpy() for w in model.weights}
    assert trainer.phase_boundaries() == [2]
    trainer.train_steps(2)
    after = {w.path: w.numpy() for w in model.weights}
    backbone = [p for p in before if not p.startswith("predictions")]
    assert "block1_bn/moving_mean" in backbone and "block2_conv/kernel" in backbone
    for path in backbone:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert not np.allclose(after["predictions/kernel"], before["predictions/kernel"])
    trainer.train_steps(1)  # Unfrozen: everything moves, BN statistics too.
    assert not np.allclose(
        model.get_layer("block1_bn").moving_mean.numpy(), before["block1_bn/moving_mean"]
    )
    assert not np.allclose(
        model.get_layer("block1_conv").kernel.numpy(), before["block1_conv/kernel"]
    )


def test_frozen_batch_norm_keeps_statistics_scale_and_shift_after_unfreezing():
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8),
        images,
        labels,
        batch_size=8,
        backbone=loop.Backbone(
            head_layers=transfer.head_layer_names(tiny.tiny_cnn(num_classes=3, image_size=8)),
            freeze_steps=1,
            freeze_batch_norm=True,
        ),
    )
    model = trainer.model
    batch_norm = model.get_layer("block1_bn")
    before = {w.path: w.numpy() for w in model.weights}
    trainer.train_steps(1)
    trainer.train_steps(2)  # Unfrozen: every layer but BN trains.
    after = {w.path: w.numpy() for w in model.weights}
    for path in ("moving_mean", "moving_variance", "gamma", "beta"):
        key = f"block1_bn/{path}"
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert not batch_norm.trainable
    assert not np.allclose(after["block1_conv/kernel"], before["block1_conv/kernel"])
    assert len(trainer.variables) == len(model.trainable_variables)


def test_frozen_stages_stay_fixed_in_inference_mode_while_the_later_ones_train():
    images, labels = tiny.batches(image_size=8)
    build = lambda: tiny.tiny_cnn(num_classes=3, image_size=8)  # noqa: E731
    head = transfer.head_layer_names(build())
    assert {k: [x.name for x in v] for k, v in transfer.stages(build(), head).items()} == {
        "block1": ["block1_conv", "block1_bn"],
        "block2": ["block2_conv", "block2_bn"],
    }
    trainer = tiny.make_trainer(
        _one_device(),
        build,
        images,
        labels,
        batch_size=8,
        backbone=loop.Backbone(head_layers=head, freeze_stages=1, freeze_steps=1),
    )
    model = trainer.model
    before = {w.path: w.numpy() for w in model.weights}
    trainer.train_steps(1)  # Head only...
    trainer.train_steps(2)  # ...then every stage but the first.
    after = {w.path: w.numpy() for w in model.weights}
    frozen = [path for path in before if path.startswith("block1_")]
    assert len(frozen) == 5  # kernel, gamma, beta, moving mean and variance
    for path in frozen:  # BN in inference mode: its moving statistics are not updated either.
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    for path in ("block2_conv/kernel", "block2_bn/gamma", "block2_bn/moving_mean"):
        assert not np.allclose(after[path], before[path]), path
    assert not np.allclose(after["predictions/kernel"], before["predictions/kernel"])
    assert not model.get_layer("block1_conv").trainable and model.get_layer("block2_bn").trainable
    # block2's kernel, gamma and beta; the classifier's kernel and bias.
    assert len(trainer.variables) == len(model.trainable_variables) == 5

    with pytest.raises(UserError) as error:
        tiny.make_trainer(
            _one_device(),
            build,
            images,
            labels,
            batch_size=8,
            backbone=loop.Backbone(head_layers=head, freeze_stages=3),
        )
    assert str(error.value) == (
        "--config.train.freeze_stages=3: tiny_cnn has 2 stages before its classifier "
        "(block1, block2)"
    )


def test_weight_constraints_hold_after_every_step():
    # Binary layers clip their latent weights to [-1, 1] (Hubara et al. Algorithm 1); the
    # loop applies a weight's constraint after its update as Keras' optimizer.apply does.
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8, binary="bwn"),
        images,
        labels,
        batch_size=8,
        rate=1000.0,
    )
    kernel = trainer.model.get_layer("block2_conv").kernel
    assert kernel.constraint is not None
    trainer.train_steps(2)
    values = np.abs(kernel.numpy())
    assert values.max() == 1.0 and (values == 1.0).mean() > 0.1


def test_a_trainer_once_gone_releases_its_input_pipeline():
    # tf.custom_gradient's registry entries hold the traced step, which captures the input
    # iterator (tensorflow/tensorflow#97697); the loop drops them after each call, else every
    # pipeline stayed alive until the process exited.
    images, labels = tiny.batches(image_size=8)
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8),
        images,
        labels,
        batch_size=8,
    )
    trainer.train_steps(2)
    totals, _ = trainer.train_steps(1)  # a second call of the traced step still trains
    assert np.isfinite(totals).all() and trainer.current_step == 3
    iterator = weakref.ref(trainer.inputs.iterator._iterator_resource)
    del trainer
    gc.collect()
    assert iterator() is None


@tf.custom_gradient
def _identity_with_custom_gradient(x):
    return tf.identity(x), lambda dy: dy


class _CustomGradientIdentity(keras.layers.Layer):
    def call(self, inputs):
        return _identity_with_custom_gradient(inputs)


def _custom_gradient_entries():
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    return {name for name in registry if name.startswith("CustomGradient-")}


def test_evaluation_leaves_no_custom_gradient_holding_its_trace():
    # A forward pass through a tf.custom_gradient layer registers a gradient function that
    # holds the traced eval step (tensorflow/tensorflow#97697): evaluate drops it as training does.
    images, labels = tiny.batches(image_size=8)

    def build():
        inputs = keras.Input((8, 8, 3))
        x = _CustomGradientIdentity()(keras.layers.Conv2D(4, 3)(inputs))
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3)(x))

    trainer = tiny.make_trainer(_one_device(), build, images, labels, batch_size=8)
    before = _custom_gradient_entries()
    evaluation = trainer.evaluate([(images, labels)])
    assert evaluation["examples"] == len(images)
    logits = trainer.eval_model(images.astype(np.float32), training=False).numpy()
    assert evaluation["top1"] == pytest.approx(float((logits.argmax(-1) == labels).mean()))
    assert _custom_gradient_entries() == before


def test_loss_adds_auxiliary_and_distillation_terms():
    images, labels = tiny.batches(image_size=8)
    keras.utils.set_random_seed(7)
    teacher = tiny.tiny_cnn(num_classes=3, image_size=8, name="teacher")
    weights = tiny.tiny_cnn(num_classes=3, image_size=8, aux_head=True).get_weights()
    trainer = tiny.make_trainer(
        _one_device(),
        lambda: tiny.tiny_cnn(num_classes=3, image_size=8, aux_head=True),
        images,
        labels,
        batch_size=8,
        rate=0.0,
        initial_weights=weights,
        objective=loop.Objective(
            num_classes=3,
            aux_loss_weight=0.4,
            teacher=lambda x: teacher(x, training=False),
            distill_temperature=2.0,
            distill_weight=0.5,
        ),
    )
    totals, _ = trainer.train_steps(1)
    reference = tiny.tiny_cnn(num_classes=3, image_size=8, aux_head=True)
    reference.set_weights(weights)
    x, y = images[:8].astype("float32"), labels[:8]
    out = reference(x, training=True)
    ce = keras.losses.sparse_categorical_crossentropy
    soft = tf.nn.softmax(teacher(x, training=False) / 2.0)
    distill = -tf.reduce_sum(soft * tf.nn.log_softmax(out["logits"] / 2.0), -1) * 4.0
    expected = ce(y, out["logits"], from_logits=True) + 0.4 * ce(
        y, out["aux_logits"], from_logits=True
    )
    expected = float(tf.reduce_mean(expected + 0.5 * distill))
    assert loop.summarize(totals)["loss"] == pytest.approx(expected, rel=1e-5)


def test_copy_matching_weights_replaces_a_head_of_another_size():
    source = tiny.tiny_cnn(num_classes=5, image_size=8)
    target = tiny.tiny_cnn(num_classes=3, image_size=8)
    copied, skipped = transfer.copy_matching_weights(source, target)
    assert skipped == ["predictions"]
    assert {"block1_conv", "block1_bn", "block2_conv", "block2_bn"} <= set(copied)
    np.testing.assert_array_equal(
        target.get_layer("block2_conv").kernel.numpy(),
        source.get_layer("block2_conv").kernel.numpy(),
    )
    with pytest.raises(ValueError, match="no layer"):
        transfer.copy_matching_weights(tiny.dense_model(), target)


def test_an_input_pipeline_that_cannot_be_saved_is_left_out(tmp_path):
    model = tiny.dense_model()
    stateful = tf.data.Dataset.range(10).map(lambda x: tf.py_function(lambda v: v, [x], tf.int64))
    serializable = iter(tf.data.Dataset.range(10))
    next(serializable)
    saved = runs.Checkpointer(str(tmp_path / "ok"), model=model, iterator=serializable)
    assert "iterator" in {n.split("/")[0] for n, _ in tf.train.list_variables(saved.save(1))}
    checkpointer = runs.Checkpointer(str(tmp_path / "py"), model=model, iterator=iter(stateful))
    path = checkpointer.save(1)  # Warns and saves the rest.
    names = {n.split("/")[0] for n, _ in tf.train.list_variables(path)}
    assert "model" in names and "iterator" not in names
    assert checkpointer.save(2).endswith("ckpt-2")


def _cross_entropy(targets, logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(targets * log_softmax).sum(axis=1)


def test_statistics_count_soft_targets_as_their_largest_class():
    logits = tf.constant([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    soft = tf.constant([[0.6, 0.4, 0.0], [0.7, 0.0, 0.3]])
    totals = loop._statistics(soft, logits, tf.constant([1.0, 2.0])).numpy()
    np.testing.assert_allclose(totals, [3.0, 1.0, 2.0, 2.0])  # loss sum, top-1, top-k, count


def test_trainer_applies_class_weights_to_the_training_loss():
    images, labels = tiny.batches(num_examples=4, image_size=4)
    weights = np.array([1.0, 3.0, 0.5], np.float32)
    trainer = tiny.make_trainer(
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        tiny.dense_model,
        images,
        labels,
        batch_size=4,
        rate=0.0,  # the weights stay as they are: the logits below are the step's
        objective=loop.Objective(num_classes=3, class_weights=weights),
    )
    logits = trainer.model(images.astype(np.float32), training=False).numpy()
    totals, _ = trainer.train_steps(1)
    plain = _cross_entropy(np.eye(3)[labels], logits)
    assert totals[0] == pytest.approx((plain * weights[labels]).sum(), rel=1e-5)
    evaluation = trainer.evaluate([(images, labels)])
    assert evaluation["loss"] == pytest.approx(plain.mean(), rel=1e-5)  # unweighted
