"""Optimizers by name, the ones Keras lacks (TF1-style RMSprop, LARS, LAMB, AdaBound/AMSBound),
and the weight-decay rule of each.

The training loop (loop.py) applies updates itself: it all-reduces the gradients, clips them,
adds coupled weight decay, and then calls each optimizer's `update_step(gradient, variable,
learning_rate)` once per variable, with the learning rate of the variable's group. So an
optimizer here is only its update rule and slots; the rate always comes from the loop.

Weight decay, per optimizer (`DECAY_RULES`):
  "l2"        sgd, rmsprop, adam, adagrad, adadelta, adabound, amsbound: the gradient of
              (weight_decay / 2) · ||w||² is added to each decayed variable's gradient, so the
              penalty goes through momentum and adaptive scaling like the data gradient (the
              ResNet references: TF Model Garden's l2 loss, torchvision's SGD `weight_decay`;
              AdaBound's reference code Luolc/AdaBound adds `weight_decay · w` the same way).
  "decoupled" adamw: w ← w − learning_rate · weight_decay · w before the Adam step (Loshchilov &
              Hutter arXiv 1711.05101, with PyTorch's and Keras' convention that the factor is
              multiplied by the current learning rate).
  "optimizer" lars, lamb: the decay is part of the layer-wise trust ratio, as in their papers
              (arXiv 1708.03888 Algorithm 1, arXiv 1904.00962 Algorithm 2).
"""

from __future__ import annotations

import keras
from keras import ops

DECAY_RULES = {
    "sgd": "l2",
    "rmsprop": "l2",
    "adam": "l2",
    "adamw": "decoupled",
    "lars": "optimizer",
    "lamb": "optimizer",
    "adagrad": "l2",
    "adadelta": "l2",
    "adabound": "l2",
    "amsbound": "l2",
}
OPTIMIZERS = tuple(DECAY_RULES)
# Each optimizer's own epsilon (`--config.train.epsilon=0`): rmsprop as the EfficientNet recipe
# (tensorflow/tpu), adam as Kingma & Ba arXiv 1412.6980 Algorithm 1, lamb as arXiv 1904.00962,
# adagrad as Keras (PyTorch: 1e-10), adadelta as Zeiler arXiv 1212.5701 §4 (and PyTorch),
# adabound/amsbound as their reference code (Luolc/AdaBound).
DEFAULT_EPSILON = {
    "rmsprop": 1e-3,
    "adam": 1e-8,
    "adamw": 1e-8,
    "lamb": 1e-6,
    "adagrad": 1e-7,
    "adadelta": 1e-6,
    "adabound": 1e-8,
    "amsbound": 1e-8,
}


def is_decayed(variable, no_bias_decay: bool = True) -> bool:
    """Whether weight decay applies to `variable`.

    With `no_bias_decay`, only kernels are decayed: biases and normalization scales/shifts (1-D)
    are excluded (Bag of Tricks arXiv 1812.01187 §3.1).
    """
    return not no_bias_decay or len(variable.shape) > 1


def add_weight_decay(gradients, variables, weight_decay: float, no_bias_decay: bool = True):
    """Adds the gradient of the L2 penalty (weight_decay / 2) · ||w||² to the decayed variables'
    gradients (the "l2" rule)."""
    if weight_decay <= 0:
        return list(gradients)
    return [
        g + ops.cast(weight_decay, g.dtype) * ops.cast(v, g.dtype)
        if g is not None and is_decayed(v, no_bias_decay)
        else g
        for g, v in zip(gradients, variables)
    ]


class RMSpropTF(keras.optimizers.Optimizer):
    """RMSprop with TensorFlow 1 semantics, as the EfficientNet and MobileNet recipes use.

    ms ← ρ·ms + (1 − ρ)·g², mom ← μ·mom + lr·g / sqrt(ms + ε), w ← w − mom, with the mean
    square `ms` starting at 1 (tf.compat.v1.train.RMSPropOptimizer) rather than 0, and ε inside
    the square root. With ε = 1e-3 (the recipes' value) the first steps are small instead of
    huge, which the recipes' learning rates rely on.
    """

    def __init__(
        self,
        learning_rate=0.01,
        rho: float = 0.9,
        momentum: float = 0.9,
        epsilon: float = DEFAULT_EPSILON["rmsprop"],
        name: str = "rmsprop_tf",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = [
            self.add_variable_from_reference(v, "mean_square", initializer="ones") for v in var_list
        ]
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        mean_square = self._mean_squares[index]
        momentum = self._momentums[index]
        self.assign(mean_square, self.rho * mean_square + (1 - self.rho) * ops.square(gradient))
        step = lr * gradient / ops.sqrt(mean_square + self.epsilon)
        self.assign(momentum, self.momentum * momentum + step)
        self.assign_sub(variable, momentum)

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


class _LayerwiseOptimizer(keras.optimizers.Optimizer):
    """Shared parts of LARS and LAMB: the decay and the trust ratio skip biases and
    normalization parameters when `no_bias_decay` (as the MLPerf and paper implementations)."""

    def __init__(self, *, weight_decay_rate: float, no_bias_decay: bool, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight_decay_rate = weight_decay_rate
        self.no_bias_decay = no_bias_decay

    def _adapted(self, variable) -> bool:
        return is_decayed(variable, self.no_bias_decay)

    def get_config(self):
        return {
            **super().get_config(),
            "weight_decay_rate": self.weight_decay_rate,
            "no_bias_decay": self.no_bias_decay,
        }


def _trust_ratio(numerator_norm, denominator_norm):
    """‖w‖ / ‖update‖, or 1 when either norm is 0 (a fresh zero-initialized layer)."""
    positive = ops.logical_and(ops.greater(numerator_norm, 0), ops.greater(denominator_norm, 0))
    return ops.where(positive, numerator_norm / ops.maximum(denominator_norm, 1e-30), 1.0)


class LARS(_LayerwiseOptimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. arXiv 1708.03888, Algorithm 1).

    For each adapted variable: local_lr = η·‖w‖ / (‖g‖ + β·‖w‖), then momentum SGD on
    lr · local_lr · (g + β·w), with β the weight decay. Other variables get plain momentum SGD.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        trust_coefficient: float = 0.001,
        weight_decay_rate: float = 0.0,
        no_bias_decay: bool = True,
        name: str = "lars",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay_rate=weight_decay_rate,
            no_bias_decay=no_bias_decay,
            name=name,
            **kwargs,
        )
        self.momentum = momentum
        self.nesterov = nesterov
        self.trust_coefficient = trust_coefficient

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self._adapted(variable):
            decay = ops.cast(self.weight_decay_rate, variable.dtype)
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            local_lr = self.trust_coefficient * _trust_ratio(w_norm, g_norm + decay * w_norm)
            gradient = (gradient + decay * variable) * local_lr
        momentum = self._momentums[self._get_variable_index(variable)]
        self.assign(momentum, self.momentum * momentum + lr * gradient)
        if self.nesterov:
            self.assign_sub(variable, self.momentum * momentum + lr * gradient)
        else:
            self.assign_sub(variable, momentum)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "trust_coefficient": self.trust_coefficient,
        }


class _AdamMoments:
    """Adam's moment estimates (Kingma & Ba arXiv 1412.6980 Algorithm 1), shared by LAMB and
    AdaBound: the slots, their update and the bias corrections. The optimizer sets `beta_1`,
    `beta_2` and `epsilon`."""

    def _build_moments(self, var_list) -> None:
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def _updated_moments(self, index: int, gradient, dtype):
        """m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g²; returns (m, v, 1 − β1^t, 1 − β2^t)."""
        step = ops.cast(self.iterations + 1, dtype)
        m, v = self._momentums[index], self._velocities[index]
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * gradient)
        self.assign(v, self.beta_2 * v + (1 - self.beta_2) * ops.square(gradient))
        bias_correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        return m, v, bias_correction_1, bias_correction_2

    def _moments_config(self) -> dict:
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class LAMB(_AdamMoments, _LayerwiseOptimizer):
    """Layer-wise Adaptive Moments (You et al. arXiv 1904.00962, Algorithm 2).

    r = m̂ / (sqrt(v̂) + ε) + λ·w for adapted variables (λ: weight decay), then
    w ← w − lr · (‖w‖ / ‖r‖) · r; other variables take the plain Adam step r = m̂ / (sqrt(v̂) + ε).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = DEFAULT_EPSILON["lamb"],
        weight_decay_rate: float = 0.0,
        no_bias_decay: bool = True,
        name: str = "lamb",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay_rate=weight_decay_rate,
            no_bias_decay=no_bias_decay,
            name=name,
            **kwargs,
        )
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._build_moments(var_list)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m, v, bias_correction_1, bias_correction_2 = self._updated_moments(
            index, gradient, variable.dtype
        )
        m_hat, v_hat = m / bias_correction_1, v / bias_correction_2
        update = m_hat / (ops.sqrt(v_hat) + self.epsilon)
        if self._adapted(variable):
            update = update + ops.cast(self.weight_decay_rate, variable.dtype) * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            r_norm = ops.sqrt(ops.sum(ops.square(update)))
            update = update * _trust_ratio(w_norm, r_norm)
        self.assign_sub(variable, lr * update)

    def get_config(self):
        return {**super().get_config(), **self._moments_config()}


class AdaBound(_AdamMoments, keras.optimizers.Optimizer):
    """AdaBound and AMSBound (Luo et al. arXiv 1902.09843, Algorithms 2 and 3), as the authors'
    reference code computes them (Luolc/AdaBound `adabound/adabound.py`).

    Adam's per-coordinate rate is clipped to bounds that both converge to `final_learning_rate`
    (the SGD rate the run ends with), so training moves from Adam towards SGD:

      m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²  (AMSBound: v̂ ← max(v̂, v), used for v)
      η = lr·√(1 − β2^t) / (1 − β1^t) / (√v + ε)
      final = final_learning_rate · lr / base_learning_rate
      w ← w − clip(η, final·(1 − 1/(γ·t + 1)), final·(1 + 1/(γ·t)))·m

    Where the paper and the code differ, this follows the code: Adam's bias correction is kept
    and there is no 1/√t factor. `final` follows the learning-rate schedule (the reference's
    "workaround to apply lr decay": final_lr · lr / base_lr), so warmup, decay, plateau
    reductions and the backbone multiplier scale both bounds as they scale lr. Only the ratio
    final_learning_rate / base_learning_rate matters, so both may be given per 256 images.
    γ = 0 leaves the rate unbounded (plain Adam).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = DEFAULT_EPSILON["adabound"],
        final_learning_rate: float = 0.1,
        base_learning_rate: float = 0.001,
        gamma: float = 1e-3,
        amsbound: bool = False,
        name: str = "adabound",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.final_learning_rate = final_learning_rate
        self.base_learning_rate = base_learning_rate
        self.gamma = gamma
        self.amsbound = amsbound

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._build_moments(var_list)
        if self.amsbound:
            self._max_velocities = [
                self.add_variable_from_reference(v, "max_velocity") for v in var_list
            ]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m, v, bias_correction_1, bias_correction_2 = self._updated_moments(index, gradient, dtype)
        if self.amsbound:
            v_max = self._max_velocities[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        rate = lr * ops.sqrt(bias_correction_2) / bias_correction_1 / (ops.sqrt(v) + self.epsilon)
        final = lr * (self.final_learning_rate / self.base_learning_rate)
        gamma_t = ops.cast(self.gamma, dtype) * step
        lower = final * (1 - 1 / (gamma_t + 1))
        upper = final * (1 + 1 / gamma_t)  # +inf for γ = 0
        self.assign_sub(variable, ops.clip(rate, lower, upper) * m)

    def get_config(self):
        return {
            **super().get_config(),
            **self._moments_config(),
            "final_learning_rate": self.final_learning_rate,
            "base_learning_rate": self.base_learning_rate,
            "gamma": self.gamma,
            "amsbound": self.amsbound,
        }


def create_optimizer(
    name: str,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    rho: float = 0.9,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float | None = None,
    trust_coefficient: float = 0.001,
    adagrad_initial_accumulator: float = 0.1,
    adadelta_rho: float = 0.95,
    final_learning_rate: float = 0.1,
    base_learning_rate: float = 0.001,
    bound_gamma: float = 1e-3,
    weight_decay: float = 0.0,
    no_bias_decay: bool = True,
) -> keras.optimizers.Optimizer:
    """An optimizer by name (one of OPTIMIZERS).

    The learning rate is not set here: the loop passes each step's rate to `update_step`.
    `base_learning_rate` is the rate the schedule starts from, which AdaBound's bounds are
    relative to (see AdaBound). `epsilon` None is the optimizer's own (DEFAULT_EPSILON).
    `weight_decay` and `no_bias_decay` are used only by the "optimizer" decay rule (lars, lamb);
    the loop applies the "l2" and "decoupled" rules itself.
    """
    if epsilon is None:
        epsilon = DEFAULT_EPSILON.get(name, 0.0)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum, nesterov=nesterov)
    if name == "rmsprop":
        return RMSpropTF(rho=rho, momentum=momentum, epsilon=epsilon)
    if name in ("adam", "adamw"):
        # adamw's decoupled decay is applied by the loop (DECAY_RULES), so both are Adam here.
        return keras.optimizers.Adam(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, name=name)
    if name == "adagrad":
        # Duchi et al. 2011 as Keras computes it: lr · g / √(Σg² + ε), the sum starting at
        # `adagrad_initial_accumulator` (TensorFlow's 0.1; PyTorch starts at 0).
        return keras.optimizers.Adagrad(
            initial_accumulator_value=adagrad_initial_accumulator, epsilon=epsilon
        )
    if name == "adadelta":
        # Zeiler arXiv 1212.5701 Algorithm 1, the step multiplied by the learning rate (1.0 is
        # the paper's; PyTorch and Keras scale it the same way).
        return keras.optimizers.Adadelta(rho=adadelta_rho, epsilon=epsilon)
    if name in ("adabound", "amsbound"):
        return AdaBound(
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            final_learning_rate=final_learning_rate,
            base_learning_rate=base_learning_rate,
            gamma=bound_gamma,
            amsbound=name == "amsbound",
            name=name,
        )
    if name == "lars":
        return LARS(
            momentum=momentum,
            nesterov=nesterov,
            trust_coefficient=trust_coefficient,
            weight_decay_rate=weight_decay,
            no_bias_decay=no_bias_decay,
        )
    if name == "lamb":
        return LAMB(
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay_rate=weight_decay,
            no_bias_decay=no_bias_decay,
        )
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
