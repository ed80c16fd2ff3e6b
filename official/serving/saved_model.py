"""The SavedModel that TF Serving loads: encoded images in, top-k classes and names out.

Signatures:
  serving_default   image_bytes: string [N] (JPEG/PNG/GIF/BMP, any size) →
                    classes int32 [N, k], probabilities float32 [N, k], class_names string [N, k]
                    (the model's own eval preprocessing, `preprocess.eval_image`, runs in the
                    graph, so the export gives exactly what `official.evaluate --mode=center`
                    gives)
  predict_images    images: float32 [N, S, S, 3] already preprocessed (0..255) →
                    logits, probabilities float32 [N, K]

Why a tf.Module that tracks the raw variables, and not `model.export` / ExportArchive
(../shared/reference/capabilities.md §5): a `tf.saved_model.save` of a Keras 3 model cannot be
loaded by the TF1/C++ session loader that TF Serving uses ("Could not find variable ...")
unless the underlying `tf.Variable`s are tracked; Keras' exporters do track them, but also
track the Keras variables that wrap them, so every weight is written twice. Tracking only the
raw variables (and not the Keras model object) writes each weight once and loads in both the
TF1 and TF2 loaders.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

import numpy as np
import tensorflow as tf

from official import atomic
from official.data import imagefile, preprocess
from official.errors import UserError, tensorflow_words
from official.models import heads

SERVING_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
LABELS_ASSET = "labels.txt"
METADATA_FILE = "export.json"
# TF Serving replays these requests before it reports the model as available
# (tensorflow/serving saved_model_warmup.md): the first real request then does not pay for
# graph initialisation.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Each extra warm-up batch size is replayed this many times: on the AMX VM a freshly loaded
# SavedModel's first batch-32 calls took 914, 445, 245, then ≈ 140 ms (Inception-v3 bfloat16;
# on the AMD VM the first was ≈ 1.1x the steady state; README "Export for TF Serving").
WARMUP_REPEATS = 3
# TF Serving reads at most 1,000 warm-up records; a few sizes and a bounded request size keep
# the file small (the warm-up JPEG is a few KB).
MAX_WARMUP_BATCH_SIZES = 8
MAX_WARMUP_BATCH = 1024
DEFAULT_TOP_K = 5

# Magic bytes of the formats `tf.io.decode_image` decodes to RGB; the same rules as
# official.data.imagefile.check, here as graph ops.
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
_BMP_MAGIC = b"BM"
_TAIL_BYTES = 64


class ExportError(UserError, ValueError):
    """An export that cannot be written (existing version, bad version directory)."""


def _contains(haystack: tf.Tensor, needle: bytes) -> tf.Tensor:
    """Whether the uint8 vector `haystack` contains the byte string `needle`."""
    length, n = tf.shape(haystack)[0], len(needle)
    windows = tf.stack([haystack[i : tf.maximum(length - n + 1 + i, i)] for i in range(n)], 1)
    return tf.reduce_any(tf.reduce_all(tf.equal(windows, list(needle)), axis=1))


def check_image_bytes(
    encoded: tf.Tensor, index: tf.Tensor, max_pixels: int = imagefile.MAX_IMAGE_PIXELS
) -> tf.Operation:
    """An assertion that fails with InvalidArgument naming what is wrong with image `index`.

    Empty input, bytes of no supported format, JPEG/PNG files cut short (no end-of-image
    marker / IEND chunk near the end) and images whose header claims more than `max_pixels`
    pixels are reported before the decoders give vaguer errors (or decode a bomb).
    """
    length = tf.strings.length(encoded)
    prefix = tf.strings.join([f"{BYTES_INPUT}[", tf.strings.as_string(index), "]: "])
    head = tf.strings.substr(encoded, 0, 8)
    is_jpeg = tf.io.is_jpeg(encoded)
    is_png = tf.equal(head, _PNG_MAGIC)
    is_gif = tf.reduce_any(tf.equal(tf.strings.substr(head, 0, 6), list(_GIF_MAGICS)))
    is_bmp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 2), _BMP_MAGIC), length >= 14)
    tail = tf.io.decode_raw(
        tf.strings.substr(encoded, tf.maximum(length - _TAIL_BYTES, 0), _TAIL_BYTES), tf.uint8
    )
    problem = tf.case(
        [
            (tf.equal(length, 0), lambda: tf.constant("empty input")),
            (
                tf.logical_not(is_jpeg | is_png | is_gif | is_bmp),
                lambda: tf.constant("not an image (not JPEG, PNG, GIF or BMP data)"),
            ),
            (
                is_jpeg & tf.logical_not(_contains(tail, b"\xff\xd9")),
                lambda: tf.constant("truncated JPEG (no end-of-image marker)"),
            ),
            (
                is_png & tf.logical_not(_contains(tail, b"IEND")),
                lambda: tf.constant("truncated PNG (no IEND chunk)"),
            ),
        ],
        default=lambda: tf.constant(""),
    )
    readable = tf.debugging.Assert(tf.equal(problem, ""), [prefix + problem])
    with tf.control_dependencies([readable]):  # The header is read only from a whole image.
        pixels = preprocess.header_pixels(encoded)
        return tf.debugging.Assert(
            pixels <= max_pixels,
            [
                prefix
                + tf.strings.as_string(pixels)
                + f" pixels in its header, above the limit of {max_pixels:,} "
                + "(a decompression bomb?)"
            ],
        )


class ServingModule(tf.Module):
    """The exported graph: preprocessing, model and top-k, over the model's raw variables.

    Args:
      model: a Keras model taking 0..255 images and returning logits.
      labels_path: the run's labels.txt (one class name per line, in label order).
      geometry: the model's evaluation preprocessing.
      top_k: classes returned by `serve`.
      max_image_pixels: larger images (by their header) fail their request.
      single_image_branch: run batch-1 requests on a copy of the model's ops of their own
        (see `logits` below). The TFLite export turns it off: TFLite has no such weight cache,
        and the branch would only add a subgraph (2 % of a width-0.35 MobileNetV2's file).
    """

    def __init__(
        self,
        model,
        *,
        labels_path: str,
        geometry: preprocess.Geometry,
        top_k: int = DEFAULT_TOP_K,
        max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
        single_image_branch: bool = True,
    ):
        super().__init__(name="serving")
        # Only the raw tf.Variables are tracked (see the module docstring); the Keras model
        # lives in the closures below, not as an attribute, so it is not saved a second time.
        self.model_variables = [variable.value for variable in model.variables]
        self.labels_asset = tf.saved_model.Asset(labels_path)
        self.class_names = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.labels_asset,
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )
        num_classes = int(heads.split_outputs(model.output)[0].shape[-1])
        k = min(top_k, num_classes)
        image_size = geometry.image_size

        def model_logits(images):
            return tf.cast(heads.split_outputs(model(images, training=False))[0], tf.float32)

        def logits(images):
            if not single_image_branch:
                return model_logits(images)
            # A server runs with oneDNN's weight cache (official.assume_frozen_weights): each
            # convolution kernel converts its weights once, into the blocked layout that suits
            # the batch size of its first call, and keeps it. One set of kernels for every
            # batch size made a server that had seen batch 32 answer single images slowly
            # (VGG-16: 673 ms vs 281 ms at batch 1), and one warmed with single images slow at
            # batch 32 (ResNet-50: 2.9 s vs 2.3 s). The two branches are separate kernels with
            # a cache each; the variables (and without the cache, the speed) are shared.
            return tf.cond(
                tf.shape(images)[0] == 1,
                lambda: model_logits(images),
                lambda: model_logits(images),
            )

        def prepare(args):
            encoded, index = args
            with tf.control_dependencies([check_image_bytes(encoded, index, max_image_pixels)]):
                return preprocess.eval_image(encoded, geometry)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
        def serve(image_bytes):
            def classify():
                images = tf.map_fn(
                    prepare,
                    (image_bytes, tf.range(tf.shape(image_bytes)[0])),
                    fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
                )
                top = tf.math.top_k(tf.nn.softmax(logits(tf.cast(images, tf.float32))), k=k)
                return top.indices, top.values

            def nothing():  # An empty request gets an empty answer, not a kernel error.
                return tf.zeros([0, k], tf.int32), tf.zeros([0, k], tf.float32)

            classes, probabilities = tf.cond(tf.size(image_bytes) > 0, classify, nothing)
            return {
                "classes": classes,
                "probabilities": probabilities,
                "class_names": self.class_names.lookup(tf.cast(classes, tf.int64)),
            }

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=IMAGES_INPUT)
            ]
        )
        def predict_images(images):
            scores = logits(images)
            return {"logits": scores, "probabilities": tf.nn.softmax(scores)}

        self.serve = serve
        self.predict_images = predict_images

    @property
    def signatures(self) -> dict:
        return {SERVING_SIGNATURE: self.serve, IMAGES_SIGNATURE: self.predict_images}


def next_version(export_dir: str) -> int:
    """One more than the highest numeric version directory (TF Serving serves the highest)."""
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def version_directory(export_dir: str, version: int | None) -> str:
    """The path of a new version under `export_dir` (created): the next one, or `version`.

    Raises:
      ExportError: the version exists already or is not positive.
    """
    atomic.ensure_directory(export_dir, "--export_dir")
    version = next_version(export_dir) if version is None else version
    if version <= 0:
        raise ExportError(f"--version={version}: expected a positive integer")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise ExportError(f"--version={version}: {final} exists already")
    return final


@contextlib.contextmanager
def new_version(export_dir: str, version: int | None):
    """A temporary directory that becomes `export_dir/<version>` when the block completes, so
    TF Serving (which polls export_dir) never sees half an export; yields (temporary, final).

    Raises:
      ExportError: the version exists already, appeared meanwhile, or is not positive.
    """
    final = version_directory(export_dir, version)
    try:
        with atomic.directory(final) as temporary:
            yield temporary, final
    except FileExistsError:
        raise ExportError(f"{final} appeared while exporting; nothing written") from None


def warmup_images(image_size: int) -> list[bytes]:
    """A JPEG and a PNG (a smooth colour ramp) exercising both decoding paths of the graph."""
    ramp = np.linspace(0, 255, image_size, dtype=np.float32)
    pixels = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128.0), axis=-1)
    pixels = tf.constant(pixels.astype(np.uint8))
    return [tf.io.encode_jpeg(pixels).numpy(), tf.io.encode_png(pixels).numpy()]


def check_warmup_batch_sizes(batch_sizes) -> tuple[int, ...]:
    """The extra warm-up batch sizes, sorted and without repeats.

    Raises:
      ExportError: a size outside 1..MAX_WARMUP_BATCH or more than MAX_WARMUP_BATCH_SIZES sizes.
    """
    shown = ",".join(str(size) for size in batch_sizes)
    if any(
        isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_WARMUP_BATCH
        for size in batch_sizes
    ):
        raise ExportError(
            f"--warmup_batch_sizes={shown}: expected whole numbers from 1 to {MAX_WARMUP_BATCH}"
        )
    sizes = tuple(sorted(set(batch_sizes)))
    if len(sizes) > MAX_WARMUP_BATCH_SIZES:
        raise ExportError(f"--warmup_batch_sizes={shown}: at most {MAX_WARMUP_BATCH_SIZES} sizes")
    return sizes


def warmup_requests(images: list[bytes], batch_sizes: tuple[int, ...] = ()) -> list[list[bytes]]:
    """The warm-up requests' images: each of `images` alone (both decoding paths), then for
    each batch size above 1 that many copies of the first image, WARMUP_REPEATS times."""
    requests = [[image] for image in images]
    for size in check_warmup_batch_sizes(batch_sizes):
        if size > 1:
            requests += [[images[0]] * size] * WARMUP_REPEATS
    return requests


def warmup_records(requests: list[list[bytes]], model_name: str) -> list[bytes]:
    """Serialized `tensorflow.serving.PredictionLog`s, one request per list of images."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    records = []
    for images in requests:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SERVING_SIGNATURE
        request.inputs[BYTES_INPUT].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        records.append(log.SerializeToString())
    return records


def write_metadata(directory: str, metadata: dict) -> None:
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)


def save_module(module: ServingModule, directory: str) -> None:
    tf.saved_model.save(module, directory, signatures=module.signatures)


def export_saved_model(
    model,
    *,
    export_dir: str,
    labels_path: str,
    geometry: preprocess.Geometry,
    model_name: str,
    metadata: dict,
    version: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
    warmup_batch_sizes: tuple[int, ...] = (),
) -> str:
    """Writes `export_dir/<version>/` (saved_model.pb, variables/, assets/labels.txt,
    assets.extra/{tf_serving_warmup_requests, export.json}) and returns its path.

    The warm-up requests are a single JPEG and a single PNG, then WARMUP_REPEATS requests of
    each of `warmup_batch_sizes` (the sizes a TF Serving batcher forms, e.g. its
    allowed_batch_sizes), so that the first real batches of those sizes run warm."""
    requests = warmup_requests(warmup_images(geometry.image_size), warmup_batch_sizes)
    with new_version(export_dir, version) as (temporary, final):
        module = ServingModule(
            model,
            labels_path=labels_path,
            geometry=geometry,
            top_k=top_k,
            max_image_pixels=max_image_pixels,
        )
        save_module(module, temporary)
        extra = os.path.join(temporary, os.path.dirname(WARMUP_FILE))
        os.makedirs(extra, exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(temporary, WARMUP_FILE)) as writer:
            for record in warmup_records(requests, model_name):
                writer.write(record)
        write_metadata(
            extra,
            {
                **metadata,
                "format": "saved_model",
                "top_k": top_k,
                # Read off the requests written, so it cannot disagree with the file.
                "warmup_batch_sizes": sorted({len(images) for images in requests}),
            },
        )
    return final


def resolve_saved_model(path: str) -> str:
    """A SavedModel directory, or the newest numeric version under an export base directory.

    Raises:
      ExportError: no saved_model.pb there nor in a version directory.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = sorted((int(name) for name in os.listdir(path) if name.isdigit()), reverse=True)
        for version in versions:
            candidate = os.path.join(path, str(version))
            if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
                return candidate
    raise ExportError(f"--export_dir={path}: no saved_model.pb in it or in a version directory")


def load(path: str, flag: str = "--export_dir"):
    """tf.saved_model.load, with a damaged export (a truncated saved_model.pb, missing or
    corrupt variables) reported in one line.

    Raises:
      ExportError: the directory does not hold a loadable SavedModel.
    """
    try:
        return tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf, OS and TensorFlow errors alike.
        reason = describe_error(e) if str(e).strip() else type(e).__name__
        raise ExportError(f"{flag}={path}: not a loadable SavedModel ({reason})") from None


def load_classifier(export_dir: str):
    """The `serving_default` signature of an export: a version directory, or the base
    directory for its newest version."""
    path = resolve_saved_model(export_dir)
    loaded = load(path)
    if SERVING_SIGNATURE not in loaded.signatures:
        raise ExportError(f"--export_dir={path}: no {SERVING_SIGNATURE} signature")
    return loaded.signatures[SERVING_SIGNATURE]


def describe_error(error: Exception) -> str:
    """The useful line of a serving error: the graph's own check ("image_bytes[0]: truncated
    JPEG ...") or the decoder's message."""
    message = getattr(error, "message", str(error))
    match = re.search(r"image_bytes\[\d+\]: ([^\]\n'\"]+)", message)
    if match:
        return match.group(1).strip()
    return tensorflow_words(error)
