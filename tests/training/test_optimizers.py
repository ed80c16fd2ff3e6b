"""Optimizer update rules against hand computation, and the loop's step against a reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from official.training import loop, optimizers


def _several_updates(optimizer, value, gradients, rate):
    variable = keras.Variable(np.array(value, np.float32))
    optimizer.build([variable])
    for gradient in gradients:
        optimizer.update_step(tf.constant(gradient, tf.float32), variable, rate)
        optimizer.iterations.assign_add(1)
    return variable.numpy()


def _one_update(optimizer, value, gradient, rate=0.1, steps=1):
    return _several_updates(optimizer, value, [gradient] * steps, rate)


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


class ReferenceAdaBound:
    """NumPy transcription of `AdaBound.step` in the authors' code (Luolc/AdaBound
    adabound/adabound.py), one parameter group, in float64: PyTorch's coupled `weight_decay`
    (added to the gradient), the bounds around final_lr · lr / base_lr for a scheduled lr.
    Counts how often each bound was active, so tests can show that the clipping was exercised."""

    def __init__(
        self,
        base_lr,
        *,
        final_lr,
        gamma,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsbound=False,
    ):
        self.base_lr, self.final_lr, self.gamma, self.eps = base_lr, final_lr, gamma, eps
        self.weight_decay, self.amsbound = weight_decay, amsbound
        self.beta1, self.beta2 = betas
        self.state = {}
        self.counts = {"lower": 0, "upper": 0, "inside": 0, "max_matters": 0}

    def step(self, params, grads, lr):
        """params, grads: lists of arrays; returns the updated params."""
        updated = []
        for index, (p, grad) in enumerate(zip(params, grads)):
            p, grad = np.asarray(p, np.float64), np.asarray(grad, np.float64)
            state = self.state.setdefault(
                index, {"step": 0, "m": 0 * p, "v": 0 * p, "v_max": 0 * p}
            )
            state["step"] += 1
            t = state["step"]
            if self.weight_decay:
                grad = grad + self.weight_decay * p
            state["m"] = self.beta1 * state["m"] + (1 - self.beta1) * grad
            state["v"] = self.beta2 * state["v"] + (1 - self.beta2) * grad * grad
            step_size = lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
            final_lr = self.final_lr * lr / self.base_lr
            lower = final_lr * (1 - 1 / (self.gamma * t + 1))
            upper = final_lr * (1 + 1 / (self.gamma * t))
            rate = step_size / (np.sqrt(state["v"]) + self.eps)
            if self.amsbound:
                state["v_max"] = np.maximum(state["v_max"], state["v"])
                adam_rate = np.clip(rate, lower, upper)
                rate = step_size / (np.sqrt(state["v_max"]) + self.eps)
                # Steps where the maximum changes the update (AMSGrad is not Adam there).
                self.counts["max_matters"] += int(np.sum(np.clip(rate, lower, upper) != adam_rate))
            self.counts["lower"] += int(np.sum(rate < lower))
            self.counts["upper"] += int(np.sum(rate > upper))
            self.counts["inside"] += int(np.sum((rate >= lower) & (rate <= upper)))
            updated.append(p - np.clip(rate, lower, upper) * state["m"])
        return updated


@pytest.mark.parametrize("name", ["adabound", "amsbound"])
def test_adabound_follows_the_reference_code_with_active_bounds_and_a_schedule(name):
    rng = np.random.default_rng(7)
    steps = 6
    # Gradients from 1e-3 to 10, shrinking in the later steps (so AMSBound's maximum matters).
    magnitudes = (
        10.0 ** rng.uniform(-3, 1, (steps, 3, 4)) * np.linspace(1, 0.05, steps)[:, None, None]
    )
    gradients = magnitudes * rng.choice([-1.0, 1.0], (steps, 3, 4))
    rates = [0.01, 0.006, 0.003, 0.008, 0.002, 0.005]  # A schedule moves the bounds too.
    initial = rng.normal(size=(3, 4))
    optimizer = optimizers.create_optimizer(
        name, beta_2=0.9, final_learning_rate=0.1, base_learning_rate=0.01, bound_gamma=0.1
    )
    variable = keras.Variable(initial.astype(np.float32))
    optimizer.build([variable])
    # β2 = 0.9: v follows the shrinking gradients quickly, so AMSBound's maximum matters.
    reference = ReferenceAdaBound(
        0.01, final_lr=0.1, gamma=0.1, betas=(0.9, 0.9), amsbound=name == "amsbound"
    )
    expected = [initial]
    for gradient, rate in zip(gradients, rates):
        optimizer.update_step(tf.constant(gradient, tf.float32), variable, rate)
        optimizer.iterations.assign_add(1)
        expected = reference.step(expected, [gradient], rate)
        np.testing.assert_allclose(variable.numpy(), expected[0], rtol=2e-5, atol=1e-6)
    counts = reference.counts
    assert counts["lower"] > 0 and counts["upper"] > 0 and counts["inside"] > 0, counts
    assert (counts["max_matters"] > 0) == (name == "amsbound"), counts


def test_adabound_without_bounds_is_adam():
    # γ = 0: the bounds are [0, ∞), what is left is Adam with its bias correction.
    gradients = [[0.5, -2.0, 1e-3], [0.1, 3.0, -1e-2], [-0.4, 0.2, 5.0]]
    results = []
    for optimizer in (
        optimizers.create_optimizer("adabound", bound_gamma=0.0),
        keras.optimizers.Adam(epsilon=1e-8),
    ):
        variable = keras.Variable(np.array([1.0, 2.0, 3.0], np.float32))
        optimizer.build([variable])
        for gradient in gradients:
            optimizer.update_step(tf.constant(gradient), variable, 0.05)
            optimizer.iterations.assign_add(1)
        results.append(variable.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


@pytest.mark.parametrize("name", ["adabound", "amsbound"])
def test_loop_step_with_adabound_matches_the_reference_code(name):
    """The loop's coupled L2 rule on every variable is PyTorch's weight_decay, and its
    scheduled rate moves the bounds as the reference's lr scheduler does."""
    images, labels = tiny.batches()
    keras.utils.set_random_seed(6)
    weights = tiny.dense_model().get_weights()
    rates, batch, steps = [0.02, 0.01, 0.015, 0.005], 8, 4
    kwargs = {"final_learning_rate": 2.0, "base_learning_rate": 0.02, "bound_gamma": 0.5}
    trainer = tiny.make_trainer(
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        tiny.dense_model,
        images,
        labels,
        batch_size=batch,
        optimizer=name,
        rate=lambda step: tf.gather(tf.constant(rates), step),
        initial_weights=weights,
        optimizer_kwargs=kwargs,
        gradients=loop.Gradients(weight_decay=0.05, no_bias_decay=False),
    )
    trainer.train_steps(steps)
    reference = ReferenceAdaBound(
        0.02, final_lr=2.0, gamma=0.5, weight_decay=0.05, amsbound=name == "amsbound"
    )
    step = iter(range(steps))

    def apply(gradients, variables):
        updated = reference.step([v.numpy() for v in variables], gradients, rates[next(step)])
        for variable, value in zip(variables, updated):
            variable.assign(value.astype(np.float32))

    expected = _reference_run(weights, images, labels, batch, steps, apply)
    for got, want in zip(trainer.model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    counts = reference.counts
    assert counts["lower"] > 0 and counts["upper"] > 0 and counts["inside"] > 0, counts


def test_adagrad_and_adadelta_take_their_hyperparameters():
    gradients = np.array([[0.5, -2.0, 1e-2], [0.1, 3.0, -1e-1], [-0.4, 0.2, 5.0]])
    initial, lr = np.array([1.0, 2.0, 3.0]), 0.5
    # Adagrad (Duchi et al. 2011) as Keras: w ← w − lr·g / √(acc + ε), acc from its start value.
    adagrad = optimizers.create_optimizer("adagrad", adagrad_initial_accumulator=0.2, epsilon=1e-4)
    w, accumulator = initial.copy(), np.full(3, 0.2)
    for g in gradients:
        accumulator += g * g
        w -= lr * g / np.sqrt(accumulator + 1e-4)
    np.testing.assert_allclose(_several_updates(adagrad, initial, gradients, lr), w, rtol=1e-6)
    # Adadelta: Zeiler arXiv 1212.5701 Algorithm 1, the step times lr.
    rho, eps = 0.8, 1e-3
    adadelta = optimizers.create_optimizer("adadelta", adadelta_rho=rho, epsilon=eps)
    w, mean_square, mean_delta = initial.copy(), np.zeros(3), np.zeros(3)
    for g in gradients:
        mean_square = rho * mean_square + (1 - rho) * g * g
        delta = -np.sqrt(mean_delta + eps) / np.sqrt(mean_square + eps) * g
        mean_delta = rho * mean_delta + (1 - rho) * delta * delta
        w += lr * delta
    np.testing.assert_allclose(_several_updates(adadelta, initial, gradients, lr), w, rtol=1e-6)
