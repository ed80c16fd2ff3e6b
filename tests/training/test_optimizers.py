"""Optimizer update rules against hand computation, and the loop's step against a reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from official.training import loop, optimizers


def _one_update(optimizer, value, gradient, rate=0.1, steps=1):
    variable = keras.Variable(np.array(value, np.float32))
    optimizer.build([variable])
    for _ in range(steps):
        optimizer.update_step(tf.constant(gradient, tf.float32), variable, rate)
        optimizer.iterations.assign_add(1)
    return variable.numpy()


def test_rmsprop_has_tf1_semantics():
    # TF1 RMSProp: ms starts at 1, epsilon inside the square root.
    w, g, lr, rho, mu, eps = 1.0, 0.5, 0.1, 0.9, 0.9, 1e-3
    optimizer = optimizers.RMSpropTF(rho=rho, momentum=mu, epsilon=eps)
    result = _one_update(optimizer, [w], [g], lr, steps=2)
    ms, mom = 1.0, 0.0
    for _ in range(2):
        ms = rho * ms + (1 - rho) * g * g
        mom = mu * mom + lr * g / np.sqrt(ms + eps)
        w -= mom
    np.testing.assert_allclose(result, [w], rtol=1e-6)


def test_lars_scales_kernels_by_the_trust_ratio_and_not_biases():
    kernel = np.array([[3.0, 4.0]])  # ||w|| = 5
    grad = np.array([[0.6, 0.8]])  # ||g|| = 1
    eta, wd, lr = 0.001, 0.01, 2.0
    optimizer = optimizers.LARS(momentum=0.9, trust_coefficient=eta, weight_decay_rate=wd)
    result = _one_update(optimizer, kernel, grad, lr)
    local_lr = eta * 5.0 / (1.0 + wd * 5.0)  # arXiv 1708.03888 Algorithm 1
    np.testing.assert_allclose(result, kernel - lr * local_lr * (grad + wd * kernel), rtol=1e-6)
    bias = _one_update(
        optimizers.LARS(momentum=0.9, weight_decay_rate=wd), [1.0, 2.0], [0.5, 0.5], lr
    )
    np.testing.assert_allclose(bias, [1.0 - lr * 0.5, 2.0 - lr * 0.5], rtol=1e-6)


def test_lamb_first_step_matches_the_paper():
    kernel = np.array([[3.0, 4.0]])
    grad = np.array([[0.6, -0.8]])
    wd, lr, eps = 0.1, 0.01, 1e-6
    result = _one_update(optimizers.LAMB(epsilon=eps, weight_decay_rate=wd), kernel, grad, lr)
    # Step 1: m̂ = g, v̂ = g², so the Adam direction is g / (|g| + ε).
    r = grad / (np.abs(grad) + eps) + wd * kernel
    expected = kernel - lr * (5.0 / np.linalg.norm(r)) * r
    np.testing.assert_allclose(result, expected, rtol=1e-5)


def _reference_run(weights, images, labels, batch_size, steps, apply):
    model = tiny.dense_model()
    model.set_weights(weights)
    for step in range(steps):
        x = images[step * batch_size : (step + 1) * batch_size].astype(np.float32)
        y = labels[step * batch_size : (step + 1) * batch_size]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
            )
        variables = model.trainable_variables
        apply(tape.gradient(loss, variables), variables)
    return model.get_weights()


def _kernels(variables):
    return [v for v in variables if len(v.shape) > 1]


@pytest.mark.parametrize(
    "name, kwargs, rule",
    [
        ("sgd", {"momentum": 0.9}, {"weight_decay": 0.05}),
        ("sgd", {"momentum": 0.9, "nesterov": True}, {"clip_gradient_norm": 0.05}),
        ("adamw", {}, {"weight_decay": 0.5}),
        ("adam", {}, {"weight_decay": 0.05, "no_bias_decay": False}),
    ],
)
def test_loop_step_matches_a_reference_implementation(name, kwargs, rule):
    images, labels = tiny.batches()
    keras.utils.set_random_seed(3)
    weights = tiny.dense_model().get_weights()
    rate, batch, steps = 0.05, 8, 3
    trainer = tiny.make_trainer(
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        tiny.dense_model,
        images,
        labels,
        batch_size=batch,
        optimizer=name,
        rate=rate,
        initial_weights=weights,
        optimizer_kwargs=kwargs,
        gradients=loop.Gradients(**rule),
    )
    trainer.train_steps(steps)
    decay = rule.get("weight_decay", 0.0)
    clip = rule.get("clip_gradient_norm", 0.0)
    if name == "adamw":  # Decoupled: Keras' AdamW, biases excluded.
        reference = keras.optimizers.AdamW(rate, weight_decay=decay, epsilon=1e-8)

        def apply(gradients, variables):
            if not reference.built:
                reference.exclude_from_weight_decay(
                    var_list=[v for v in variables if len(v.shape) == 1]
                )
            reference.apply(gradients, variables)
    else:  # Coupled L2: the penalty's gradient joins the data gradient.
        if name == "sgd":
            reference = keras.optimizers.SGD(rate, **kwargs)
        else:
            reference = keras.optimizers.Adam(rate, epsilon=1e-8)

        def apply(gradients, variables):
            if clip:
                gradients, _ = tf.clip_by_global_norm(gradients, clip)
            decayed = variables if rule.get("no_bias_decay") is False else _kernels(variables)
            gradients = [
                g + decay * v if any(v is d for d in decayed) else g
                for g, v in zip(gradients, variables)
            ]
            reference.apply(gradients, variables)

    expected = _reference_run(weights, images, labels, batch, steps, apply)
    for got, want in zip(trainer.model.get_weights(), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert trainer.current_step == steps
    assert int(trainer.stages[0].optimizer.iterations.numpy()) == steps


def test_gradient_accumulation_equals_the_full_batch():
    images, labels = tiny.batches()
    keras.utils.set_random_seed(4)
    weights = tiny.dense_model().get_weights()
    results = []
    for accumulation in (1, 4):
        trainer = tiny.make_trainer(
            tf.distribute.OneDeviceStrategy("/cpu:0"),
            tiny.dense_model,
            images,
            labels,
            batch_size=16,
            initial_weights=weights,
            gradients=loop.Gradients(accumulation_steps=accumulation, weight_decay=0.01),
        )
        totals, _ = trainer.train_steps(2)
        results.append((trainer.model.get_weights(), totals))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)  # Same statistics.


def test_backbone_learning_rate_multiplier():
    images, labels = tiny.batches()
    keras.utils.set_random_seed(5)
    weights = tiny.dense_model().get_weights()
    changes = {}
    for multiplier in (1.0, 0.25):
        trainer = tiny.make_trainer(
            tf.distribute.OneDeviceStrategy("/cpu:0"),
            tiny.dense_model,
            images,
            labels,
            batch_size=8,
            initial_weights=weights,
            optimizer_kwargs={"momentum": 0.0},
            backbone=loop.Backbone(lr_multiplier=multiplier),
        )
        trainer.train_steps(1)
        changes[multiplier] = {
            w.path: w.numpy() - initial for w, initial in zip(trainer.model.weights, weights)
        }
    # Plain SGD: one step moves the backbone (hidden) 4× less, the head (predictions) the same.
    np.testing.assert_allclose(
        changes[0.25]["hidden/kernel"], 0.25 * changes[1.0]["hidden/kernel"], atol=1e-7
    )
    np.testing.assert_allclose(
        changes[0.25]["predictions/kernel"], changes[1.0]["predictions/kernel"]
    )
    assert np.abs(changes[1.0]["hidden/kernel"]).max() > 0


def test_weight_decay_skips_biases_and_norm_parameters():
    kernel = tf.Variable(tf.ones([2, 2]))
    bias = tf.Variable(tf.ones([2]))
    grads = optimizers.add_weight_decay([tf.zeros([2, 2]), tf.zeros([2])], [kernel, bias], 0.1)
    np.testing.assert_allclose(grads[0].numpy(), 0.1)
    np.testing.assert_allclose(grads[1].numpy(), 0.0)
    grads = optimizers.add_weight_decay(
        [tf.zeros([2, 2]), tf.zeros([2])], [kernel, bias], 0.1, no_bias_decay=False
    )
    np.testing.assert_allclose(grads[1].numpy(), 0.1)
