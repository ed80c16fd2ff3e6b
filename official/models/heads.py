"""The classifier head every family shares (global pooling → dropout → dense → float32 output)
and `model_from_features`, the last step of every builder: the model with that head, or the
model of the stage features; and how the rest of the package reads a model's outputs
(`split_outputs`, `main_output_model`)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from official.models import layers

# Layer names every family's head uses (the keras.applications names): class activation maps
# and dense evaluation read the input of the pooling and the kernel of the classifier.
POOL_LAYER = "avg_pool"
CLASSIFIER_LAYER = "predictions"
# Output keys of a model with auxiliary classifiers (Inception's `aux_head`).
LOGITS = "logits"
AUX_LOGITS = "aux_logits"


def classifier_head(
    x,
    *,
    num_classes: int,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
    classifier_bias: bool = True,
):
    """Pools the last feature map and applies the classifier.

    The pooling layer is named `avg_pool` and the dense layer `predictions` (POOL_LAYER and
    CLASSIFIER_LAYER, the keras.applications names). Class activation maps read the input of
    `avg_pool` and the kernel of `predictions` (Zhou et al. arXiv 1512.04150 §2).

    Args:
      x: last feature map (N, H, W, C), or features that are already pooled (N, C).
      num_classes: classifier outputs.
      include_top: add the classifier; if False, return pooled (or unpooled) features.
      pooling: "avg", "max" or None (without the top: keep the feature map; with the top:
        only for pooled features).
      dropout: dropout rate before the classifier.
      classifier_activation: None or "linear" for logits, "softmax" for probabilities.
      kernel_initializer: initializer of the classifier kernel.
      classifier_bias: give the classifier a bias (ShuffleNet v1's reference code has none).

    Returns:
      Logits or probabilities in float32 under any mixed-precision policy, or features.
    """
    if len(x.shape) == 4:
        if include_top:
            layers.check_choice(pooling or "", ("avg", "max"), "pooling with include_top")
        x = pool(x, pooling)
    if not include_top:
        return x
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
    x = keras.layers.Dense(
        num_classes,
        use_bias=classifier_bias,
        kernel_initializer=kernel_initializer,
        name=CLASSIFIER_LAYER,
    )(x)
    return output(x, classifier_activation)


def model_from_features(
    inputs,
    x,
    features: Sequence,
    *,
    name: str,
    features_only: bool,
    classifier_activation: str | None = None,
    aux_logits: Sequence = (),
    **head_options,
) -> keras.Model:
    """The keras.Model of a builder: its stage features, or `classifier_head` on its last map.

    Args:
      inputs: the model input (`layers.input_block`).
      x: the last feature map, the input of the classifier head (unused with `features_only`).
      features: the stage outputs, finest first.
      name: model name.
      features_only: return `features` instead of the head, for transfer learning and dense
        prediction.
      classifier_activation: None for logits, "softmax" for probabilities (every output).
      aux_logits: the dense outputs of auxiliary classifiers (Inception); with any, the model
        returns {"logits": main, "aux_logits": first, "aux_logits_2": second, ...}, the
        auxiliary outputs through `output` like the main one.
      **head_options: the other arguments of `classifier_head` (num_classes, include_top,
        pooling, dropout, kernel_initializer, classifier_bias).

    Returns:
      A keras.Model.
    """
    if features_only:
        return keras.Model(inputs, features, name=name)
    logits = classifier_head(x, classifier_activation=classifier_activation, **head_options)
    if not aux_logits:
        return keras.Model(inputs, logits, name=name)
    outputs = {LOGITS: logits}
    for index, aux in enumerate(aux_logits):
        key = AUX_LOGITS if index == 0 else f"{AUX_LOGITS}_{index + 1}"
        outputs[key] = output(aux, classifier_activation, key)
    return keras.Model(inputs, outputs, name=name)


def pool(x, pooling: str | None):
    """Global "avg" (layer `avg_pool`) or "max" (`max_pool`) pooling, or None to keep the map."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if pooling is not None:
        layers.check_choice(pooling, ("avg", "max"), "pooling")
    return x


def output(x, classifier_activation: str | None, name: str | None = None):
    """The model's output layer: logits (None/"linear") or "softmax" probabilities, float32.

    The loss and softmax run in float32 even under a mixed policy (Micikevicius et al.
    arXiv 1710.03740 §3.3): this layer casts the output. Named `logits` or `probabilities`
    unless `name` is given (auxiliary heads).
    """
    activation = classifier_activation or "linear"
    layers.check_choice(activation, ("linear", "softmax"), "classifier_activation")
    if name is None:
        name = "probabilities" if activation == "softmax" else "logits"
    return keras.layers.Activation(activation, dtype="float32", name=name)(x)


def split_outputs(outputs) -> tuple:
    """(logits, [auxiliary logits]) of a model's outputs: a tensor, or the dict of a model
    built with auxiliary classifiers ({"logits", "aux_logits"}, GoogLeNet also
    "aux_logits_2")."""
    if isinstance(outputs, dict):
        aux = [outputs[key] for key in sorted(outputs) if key.startswith(AUX_LOGITS)]
        return outputs[LOGITS], aux
    return outputs, []


def main_output_model(model: keras.Model) -> keras.Model:
    """The model with only its main output (auxiliary classifiers dropped, layers shared)."""
    if isinstance(model.output, dict):
        return keras.Model(model.inputs, model.output[LOGITS], name=model.name)
    return model


def gap_classifier(model: keras.Model):
    """(pooling layer, classifier layer) when the model ends in GAP → (dropout) → dense.

    Such a head is linear after the pooling, so the classifier applied at every location of
    the last feature map gives a class score map (class activation maps, dense evaluation).

    Returns:
      The two layers, or None when the head is anything else (e.g. VGG's FC layers, or
      MobileNetV3's 1×1 convolution after the pooling).
    """
    try:
        pool = model.get_layer(POOL_LAYER)
        classifier = model.get_layer(CLASSIFIER_LAYER)
    except ValueError:
        return None
    if not isinstance(pool, keras.layers.GlobalAveragePooling2D) or pool.keepdims:
        return None
    if not isinstance(classifier, keras.layers.Dense):
        return None
    # Walk back from the classifier's input through layers that are identities at inference.
    tensor = classifier.input
    while True:
        layer = tensor._keras_history.operation
        if layer is pool:
            return pool, classifier
        if not isinstance(layer, keras.layers.Dropout):
            return None
        tensor = layer.input
