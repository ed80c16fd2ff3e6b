"""`build_dataset`: any data source → a batched tf.data.Dataset of (uint8 images, labels).

The same stages for every source (official/data/sources.py):
  examples   this pipeline's shard of the split as (key, label); training: cached if asked,
             repeated, re-sampled by class, shuffled; the keys then become encoded images
  decode     the reference crop straight from the encoded bytes (official/data/preprocess.py),
             then the per-image augmentations (official/data/augment.py)
  batch      batches, batch-level augmentations, mixup/CutMix (official/data/mixing.py)
  serve      optionally handed to tf.data service workers; prefetched
Evaluation pipelines see every example exactly once, in order, never augmented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from official.data import augment as augment_lib
from official.data import balance, mixing, preprocess
from official.data.sources import Source, deterministic_options

# Separate random streams for the per-example, per-batch and re-sampling draws, so that
# enabling one feature does not change the random numbers of another.
_EXAMPLE_STREAM, _BATCH_STREAM, _RESAMPLE_STREAM = 0, 1, 2
# Keeps the streams of different input pipelines (workers) apart.
_PIPELINE_SEED_STRIDE = 1_000_003
# Examples per error-isolating group when undecodable images are skipped (_decode_for_training).
_DECODE_GROUP = 16


@dataclasses.dataclass(frozen=True)
class Training:
    """What a training pipeline does beyond an evaluation one.

    Attributes:
      preprocessing: the reference crop, flip and colour options.
      shuffle_buffer: examples in the shuffle buffer (at most one epoch is used).
      augmenter: augmentations after the crop.
      rare_classes: when given, the augmenter only touches examples of these labels.
      mixer: mixup/CutMix on batches; labels become float32 (B, num_classes).
      resampling_rates: per-class expected copies of each example (balance.resampling_rates).
      tf_data_service: "grpc://HOST:PORT" of a tf.data service dispatcher whose workers run
        the pipeline ("": run it here).
      service_job_name: the service job that every trainer of one run shares.
      skip_undecodable: an image the decoder fails on (damage its header check cannot see) is
        left out, with TensorFlow's warning in the log, instead of stopping the run.
    """

    preprocessing: preprocess.TrainPreprocessing
    shuffle_buffer: int
    augmenter: augment_lib.Augmenter = augment_lib.Augmenter()
    rare_classes: Sequence[int] | None = None
    mixer: mixing.Mixer | None = None
    resampling_rates: Sequence[float] | None = None
    tf_data_service: str = ""
    service_job_name: str = "cnn-repro-train"
    skip_undecodable: bool = False


def build_dataset(
    source: Source,
    *,
    split: str,
    batch_size: int,
    geometry: preprocess.Geometry,
    training: Training | None = None,
    cache: bool = False,
    seed: int = 0,
    deterministic: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the input pipeline of one split.

    Args:
      source: where the examples come from.
      split: "train" or "validation".
      batch_size: batch size of this input pipeline (per replica group, see input_context).
      geometry: the model's input size, evaluation crop and resize method.
      training: augment, shuffle and repeat forever (dropping the last partial batch) with
        these options; None: an evaluation pipeline.
      cache: keep the encoded examples in memory after the first epoch.
      seed: seed of shuffling, augmentation, mixing and re-sampling.
      deterministic: the same batches in the same order on every run (slower: parallel maps
        keep their input order).
      input_context: when set, this pipeline reads only its shard of the examples.

    Returns:
      A dataset of (uint8 images (B, size, size, 3), int32 labels (B,)), or float32 one-hot
      or mixed labels (B, num_classes) when training with a mixer.
    """
    service = training.tf_data_service if training else ""
    if service:
        input_context = None  # The service hands each batch to one trainer: no sharding.
    # The examples of a pipeline are chosen with the shared seed (file-level sharding needs
    # the same file order everywhere); its random streams get their own seed.
    stream_seed = seed
    if input_context is not None:
        stream_seed += input_context.input_pipeline_id * _PIPELINE_SEED_STRIDE
    ordered = deterministic or training is None
    num_classes = source.info.num_classes
    ds = _encoded_examples(
        source,
        split,
        training,
        cache=cache,
        seed=seed,
        stream_seed=stream_seed,
        ordered=ordered,
        input_context=input_context,
    )
    if training is None:
        ds = ds.map(
            lambda encoded, label: (preprocess.eval_image(encoded, geometry), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        ds = ds.batch(batch_size)
    else:
        rare = _rare_table(training.rare_classes, num_classes)
        ds = _decode_for_training(ds, geometry, training, rare, seed=stream_seed, ordered=ordered)
        ds = ds.batch(batch_size, drop_remainder=True)
        ds = _augment_and_mix_batches(ds, training, rare, seed=stream_seed, ordered=ordered)
    options = deterministic_options(ordered)
    options.experimental_optimization.map_parallelization = True
    ds = ds.with_options(options)
    if service:
        ds = ds.apply(
            tf.data.experimental.service.distribute(
                processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
                service=service,
                job_name=training.service_job_name,
            )
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _encoded_examples(
    source: Source,
    split: str,
    training: Training | None,
    *,
    cache: bool,
    seed: int,
    stream_seed: int,
    ordered: bool,
    input_context,
) -> tf.data.Dataset:
    """(encoded image, label): one epoch in order, or for training an endless stream that is
    re-sampled and shuffled (on the source's keys where possible: paths, not bytes)."""
    ds = source.examples(
        split,
        shuffle=training is not None and not cache,
        seed=seed,
        input_context=input_context,
        deterministic=ordered,
        portable=bool(training and training.tf_data_service),
    )
    if cache:
        ds = source.encoded(ds, deterministic=ordered).cache()
        if training is not None:  # A full reshuffle of the cached epoch.
            num_examples = source.info.num_examples[split]
            ds = ds.shuffle(num_examples, seed=stream_seed, reshuffle_each_iteration=True)
    if training is not None:
        ds = ds.repeat()
        if training.resampling_rates is not None:
            resample_seed = stream_seed * 3 + _RESAMPLE_STREAM
            ds = balance.resample(ds, training.resampling_rates, seed=resample_seed)
        if not cache or training.resampling_rates is not None:
            # No bigger than an epoch: the buffer holds encoded images (~110 KB each).
            buffer = min(training.shuffle_buffer, max(1, source.info.num_examples[split]))
            ds = ds.shuffle(buffer, seed=stream_seed, reshuffle_each_iteration=True)
    if not cache:
        ds = source.encoded(ds, deterministic=ordered)
    return ds


def _rare_table(rare_classes: Sequence[int] | None, num_classes: int) -> tf.Tensor | None:
    if rare_classes is None:
        return None
    table = np.zeros(num_classes, dtype=bool)
    table[list(rare_classes)] = True
    return tf.constant(table)


def _seeds(seed: int, stream: int) -> tf.data.Dataset:
    """An endless dataset of shape-(2,) int64 seeds for stateless random ops."""
    return tf.data.Dataset.random(seed=seed * 3 + stream).batch(2)


def _decode_for_training(
    ds: tf.data.Dataset,
    geometry: preprocess.Geometry,
    training: Training,
    rare: tf.Tensor | None,
    *,
    seed: int,
    ordered: bool,
) -> tf.data.Dataset:
    """(encoded, label) → (uint8 image, label): the reference crop, then augmentation, with one
    stateless seed per example (reproducible given the seed)."""
    augmenter = training.augmenter

    def prepare(example, example_seed):
        encoded, label = example
        crop_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(example_seed, 2)
        )
        image = preprocess.train_image(
            encoded, crop_seed, geometry=geometry, preprocessing=training.preprocessing
        )
        if augmenter.per_image:
            if rare is None:
                image = augmenter.apply_image(image, augment_seed)
            else:
                image = tf.cond(
                    rare[label],
                    lambda: augmenter.apply_image(image, augment_seed),
                    lambda: image,
                )
        return image, label

    ds = tf.data.Dataset.zip((ds, _seeds(seed, _EXAMPLE_STREAM)))
    if not training.skip_undecodable:
        return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    # A decoder error must drop only its image: errors are caught (ignore_errors) inside a
    # small dataset per _DECODE_GROUP examples, so the reader's errors upstream (a damaged
    # shard) still stop the run, named. Groups are prepared in parallel, in order if asked.
    return ds.batch(_DECODE_GROUP).interleave(
        lambda examples, seeds: (
            tf.data.Dataset.from_tensor_slices((examples, seeds))
            .map(prepare)
            .ignore_errors(log_warning=True)
        ),
        cycle_length=tf.data.AUTOTUNE,
        block_length=_DECODE_GROUP,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=ordered,
    )


def _augment_and_mix_batches(
    ds: tf.data.Dataset,
    training: Training,
    rare: tf.Tensor | None,
    *,
    seed: int,
    ordered: bool,
) -> tf.data.Dataset:
    """Batch-level (Keras layer) augmentations, then mixup/CutMix with one seed per batch.

    Stateful augmentations run one batch at a time when the order must be reproducible,
    since their random state advances with every call.
    """
    augmenter, mixer = training.augmenter, training.mixer
    if augmenter.per_batch:

        def apply(images, labels):
            augmented = augmenter.apply_batch(images)
            if rare is not None:
                keep = tf.gather(rare, labels)[:, None, None, None]
                augmented = tf.where(keep, augmented, images)
            return augmented, labels

        parallel = None if (ordered and augmenter.stateful) else tf.data.AUTOTUNE
        ds = ds.map(apply, num_parallel_calls=parallel, deterministic=ordered)
    if mixer:
        ds = tf.data.Dataset.zip((ds, _seeds(seed, _BATCH_STREAM)))
        ds = ds.map(
            lambda batch, batch_seed: mixer(batch[0], batch[1], batch_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=ordered,
        )
    return ds
