"""Dense (fully-convolutional) evaluation: the classifier applied at every location.

Simonyan & Zisserman (arXiv 1409.1556 §3.2): "the fully-connected layers are first converted to
convolutional layers ... The resulting fully-convolutional net is then applied to the whole
(uncropped) image. The result is a class score map ... spatially averaged (sum-pooled)", and
the posteriors of the image and its horizontal flip are averaged. Several test scales Q give
multi-scale evaluation (§4.2), also used by He et al. (arXiv 1512.03385 §3.4).

For a network ending in global average pooling + a dense classifier (ResNet, EfficientNet,
MobileNet v1/v2, Inception), the fully-convolutional form needs no conversion: the dense
classifier applied at every location of the last feature map is a 1×1 convolution, and the
spatial mean of that score map equals the network's own logits at any input size (the
classifier is linear). Networks with fully-connected heads (VGG) need their FC layers turned
into convolutions first: their family module provides `to_fully_convolutional`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import keras
import tensorflow as tf

from official.errors import UserError
from official.evaluation import crops
from official.models import heads


class DenseEvaluationError(UserError, ValueError):
    """The model has no fully-convolutional form this module knows how to build."""


def softmax(logits: tf.Tensor) -> tf.Tensor:
    """Class posteriors in float64.

    In float32 a confident model's posteriors saturate: the top class becomes exactly 1 and the
    others exactly 0, which turns into false ties when ranking the true class (top-5) or
    averaging posteriors (crops, ensembles). float64 keeps them apart for logit gaps up to ~700.
    """
    return tf.nn.softmax(tf.cast(logits, tf.float64))


def any_size(function: Callable) -> Callable:
    """`function` (images → tensors) as a tf.function accepting any batch, height and width.

    Keras checks a functional model's input shape only against the static dimensions it is
    given; traced with unknown height and width, a model built for one image size runs
    convolutionally on any size (the layers themselves are size-agnostic).
    """
    return tf.function(
        function,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
        reduce_retracing=True,
    )


def family_converter(builder: Callable) -> Callable | None:
    """The `to_fully_convolutional(model)` function of a model family, if it has one.

    A family whose head is not GAP + dense (VGG's fully-connected layers) provides it in its
    module (`official.models.<family>`): it returns a model taking images of any size and
    returning the class score map (N, h, w, K) of logits.
    """
    module = sys.modules.get(getattr(builder, "__module__", ""))
    return getattr(module, "to_fully_convolutional", None)


def score_map_function(
    model: keras.Model, fully_convolutional: Callable | None = None
) -> Callable[[tf.Tensor], tf.Tensor]:
    """images (N, H, W, 3) float 0..255 → class score map (N, h, w, K) of logits.

    Args:
      model: the trained model.
      fully_convolutional: the family's conversion (see `family_converter`), used when the
        model does not end in global average pooling + dense.

    Raises:
      DenseEvaluationError: neither form is available.
    """
    head = heads.gap_classifier(model)
    if head is None and fully_convolutional is not None:
        converted = fully_convolutional(model)
        return any_size(lambda images: tf.cast(converted(images, training=False), tf.float32))
    if head is None:
        raise DenseEvaluationError(
            f"{model.name}: dense evaluation needs a fully-convolutional form; this model does "
            f"not end in global average pooling ({heads.POOL_LAYER!r}) followed by a dense "
            f"classifier ({heads.CLASSIFIER_LAYER!r}) and its family has no "
            "to_fully_convolutional"
        )
    pool, classifier = head
    features = keras.Model(model.inputs, pool.input, name=f"{model.name}_features")
    kernel, bias = classifier.kernel, classifier.bias

    def score_map(images):
        feature_map = tf.cast(features(images, training=False), tf.float32)
        scores = tf.einsum("nhwc,ck->nhwk", feature_map, tf.cast(kernel, tf.float32))
        return scores + tf.cast(bias, tf.float32) if bias is not None else scores

    return any_size(score_map)


def rescaled(image: tf.Tensor, scales: tuple[int, ...], method: str) -> tuple[tf.Tensor, ...]:
    """The whole image at every test scale Q (shorter side Q, aspect ratio kept)."""
    return tuple(crops.resize_shorter_side(image, scale, method) for scale in scales)


def dense_probabilities(score_map: Callable, scaled_images, *, flip: bool) -> tf.Tensor:
    """Class posteriors of one image: mean over scales (and flips) of softmax(mean score map).

    Args:
      score_map: from `score_map_function`.
      scaled_images: uint8 (H_q, W_q, 3) images, one per test scale (see `rescaled`).
      flip: also score the mirror images.

    Returns:
      (K,) float64 probabilities.
    """
    posteriors = []
    for scaled in scaled_images:
        batch = tf.stack([scaled, tf.reverse(scaled, axis=[1])]) if flip else scaled[None]
        logits = tf.reduce_mean(score_map(tf.cast(batch, tf.float32)), axis=[1, 2])
        posteriors.append(softmax(logits))
    return tf.reduce_mean(tf.concat(posteriors, axis=0), axis=0)
