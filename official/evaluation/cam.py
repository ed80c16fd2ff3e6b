"""Class activation maps: where in the image the evidence for a class is.

CAM (Zhou et al. arXiv 1512.04150 §2): for a network ending in global average pooling and a
linear classifier, the map of class c is M_c(x, y) = Σ_k w_k^c f_k(x, y), the classifier's
weights applied to the last feature map before pooling (its spatial mean is the class score,
up to the bias).

Grad-CAM (Selvaraju et al. arXiv 1610.02391 §3, eq. 1-2) for any other head: the feature maps
A^k of the last spatial layer are weighted by the spatially averaged gradient of the class
score, α_k^c = mean_{x,y} ∂y^c/∂A^k(x, y), and L^c = ReLU(Σ_k α_k^c A^k).

Each map is drawn as three panels side by side (official/evaluation/figures.py: the image, the
heat map in a perceptual colour map with its colour bar, the heat over the image), with the
top classes and their probabilities above them. `draw_files` serves `official.cam`,
`draw_mistakes` `official.evaluate --cam_misclassified`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from official.data import imagefile, preprocess
from official.errors import UserError
from official.evaluation import figures, metrics, modes
from official.models import heads

METHODS = ("auto", "cam", "grad_cam")


@dataclasses.dataclass
class ActivationMaps:
    """Maps of a batch: `maps` (N, H, W) in [0, 1] at the input's size, the class each map is
    for, the model's posteriors (N, K), and the method ("cam" or "grad_cam")."""

    maps: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    method: str


def last_spatial_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer whose output is a feature map with more than one location (Grad-CAM's
    target: later maps are the pooled or flattened head)."""
    for layer in reversed(model.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # A layer used several times or a nested model.
            continue
        if len(shape) == 4 and (shape[1] is None or shape[1] > 1 or shape[2] > 1):
            return layer
    raise ValueError(f"{model.name}: no layer with a spatial feature map for Grad-CAM")


class CamError(UserError, ValueError):
    """A method the model's head does not allow."""


class ActivationMapper:
    """CAM for models ending in global average pooling, Grad-CAM otherwise.

    Args:
      model: a Keras model taking 0..255 images and returning logits.
      method: "auto" (CAM when the head allows it), "cam" or "grad_cam".
    """

    def __init__(self, model: keras.Model, method: str = "auto"):
        head = heads.gap_classifier(model)
        if method == "auto":
            method = "cam" if head is not None else "grad_cam"
        if method == "cam" and head is None:
            raise CamError(
                f"{model.name}: CAM needs global average pooling followed by the classifier; "
                "use Grad-CAM"
            )
        if method not in METHODS[1:]:
            raise CamError(f"unknown method {method!r}; choose {', '.join(METHODS)}")
        self.method = method
        if method == "cam":
            pool, self.classifier = head
            feature_output = pool.input
        else:
            feature_output = last_spatial_layer(model).output
        self.features_and_logits = keras.Model(model.inputs, [feature_output, model.output])

    def _forward(self, images):
        features, outputs = self.features_and_logits(images, training=False)
        logits = heads.split_outputs(outputs)[0]
        return tf.cast(features, tf.float32), tf.cast(logits, tf.float32)

    def raw_maps(self, images: np.ndarray, classes: np.ndarray | None = None):
        """(maps at the feature-map resolution (N, h, w), classes, posteriors (N, K))."""
        images = tf.cast(tf.convert_to_tensor(images), tf.float32)
        with tf.GradientTape() as tape:
            features, logits = self._forward(images)
            if classes is None:
                classes = tf.argmax(logits, axis=-1, output_type=tf.int32).numpy()
            score = tf.gather(logits, classes, axis=1, batch_dims=1)
        if self.method == "cam":
            weights = tf.gather(tf.cast(self.classifier.kernel, tf.float32), classes, axis=1)
            maps = tf.einsum("nhwc,cn->nhw", features, weights)
        else:
            gradients = tape.gradient(score, features)
            alphas = tf.reduce_mean(gradients, axis=[1, 2])
            maps = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, alphas))
        return maps.numpy(), np.asarray(classes), tf.nn.softmax(logits).numpy()

    def __call__(self, images: np.ndarray, classes: np.ndarray | None = None) -> ActivationMaps:
        """Maps of `classes` (default: each image's top class), upsampled to the image size
        and scaled to [0, 1] per image."""
        maps, classes, probabilities = self.raw_maps(images, classes)
        size = np.asarray(images).shape[1:3]
        upsampled = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0].numpy()
        low = upsampled.min(axis=(1, 2), keepdims=True)
        high = upsampled.max(axis=(1, 2), keepdims=True)
        scaled = (upsampled - low) / np.maximum(high - low, 1e-12)
        return ActivationMaps(scaled, classes, probabilities, self.method)


@dataclasses.dataclass(frozen=True)
class Drawn:
    """One image file of `draw_files`: the PNG written and the top class, or why not."""

    path: str
    written: str = ""
    class_name: str = ""
    probability: float = 0.0
    problem: str = ""


def draw_files(
    mapper: ActivationMapper,
    paths: Sequence[str],
    *,
    geometry: preprocess.Geometry,
    class_names: Sequence[str],
    output_dir: str,
    max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
) -> Iterator[Drawn]:
    """The map of each image file's top class over the image the model sees (its eval
    preprocessing), written to `output_dir/<file stem>_cam.png`.

    A file that is missing, unreadable, not a complete JPEG/PNG/GIF/BMP or above
    `max_image_pixels` is reported in its `Drawn.problem` and the others are still drawn.
    """
    written_names = set()
    for path in paths:
        try:
            with open(path, "rb") as f:
                encoded = f.read()
        except OSError as e:
            yield Drawn(path, problem=e.strerror or str(e))
            continue
        problem = imagefile.decoding_problem(*imagefile.check(encoded, max_image_pixels))
        if problem is not None:
            yield Drawn(path, problem=problem)
            continue
        image = preprocess.eval_image(tf.constant(encoded), geometry).numpy()
        maps = mapper(image[None].astype(np.float32))
        top = int(maps.classes[0])
        probability = float(maps.probabilities[0, top])
        stem = os.path.splitext(os.path.basename(path))[0]
        name, count = f"{stem}_cam.png", 1
        while name in written_names:  # Same file name in different folders.
            count += 1
            name = f"{stem}_{count}_cam.png"
        written_names.add(name)
        figure = figures.cam_figure(
            image,
            maps.maps[0],
            figures.top_classes(maps.probabilities[0], class_names),
            title=f"{os.path.basename(path)}: {class_names[top]} ({probability:.2f})",
            method=maps.method,
        )
        written = figures.save_png(figures.pixels(figure), os.path.join(output_dir, name))
        yield Drawn(path, written, class_names[top], probability)


def center_images(
    source, split: str, indices: list[int], geometry: preprocess.Geometry
) -> np.ndarray:
    """The center-crop eval images of the given examples, in the order of `indices`."""
    dataset = modes.encoded_examples(source, split, indices).map(
        lambda encoded, label: preprocess.eval_image(encoded, geometry)
    )
    by_position = dict(zip(sorted(indices), dataset.as_numpy_iterator()))
    return np.stack([by_position[i] for i in indices])


def draw_mistakes(
    model,
    source,
    split: str,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    count: int,
    geometry: preprocess.Geometry,
    directory: str,
) -> tuple[list[str], np.ndarray]:
    """Maps of the `count` most confident mistakes of an evaluation, as PNGs in `directory`.

    Returns:
      (the PNG paths, the overlays as uint8 (n, H, W, 3) for TensorBoard).
    """
    indices = metrics.worst_mistakes(probabilities, labels, count)
    if not indices:
        return [], np.zeros((0, 1, 1, 3), np.uint8)
    images = center_images(source, split, indices, geometry)
    predicted = probabilities[indices].argmax(axis=1)
    maps = ActivationMapper(model)(images.astype(np.float32), predicted)
    paths, pictures = [], []
    for rank, (index, image, heat, guess) in enumerate(zip(indices, images, maps.maps, predicted)):
        title = (
            f"example {index}: predicted {class_names[guess]} "
            f"({probabilities[index, guess]:.2f}), true {class_names[labels[index]]}"
        )
        picture = figures.pixels(
            figures.cam_figure(
                image,
                heat,
                figures.top_classes(probabilities[index], class_names),
                title=title,
                method=maps.method,
            )
        )
        paths.append(
            figures.save_png(picture, os.path.join(directory, f"{rank + 1:03d}_example{index}.png"))
        )
        pictures.append(picture)
    return paths, np.stack(pictures)
