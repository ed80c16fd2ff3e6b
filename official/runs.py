"""A training run's directory: its layout, and the one place that reads and writes it.

  config.json                      the resolved configuration and the derived values
  train.lock                       while `official.train` runs: its host and process (`RunLock`)
  labels.txt                       class names, one per line, in label order
  metrics.json                     the final evaluation of `official.train`
  checkpoints/ckpt-<step>.*        the whole training state (`Checkpointer` writes it): model,
                                   EMA, optimizers, step, input position, ...
  checkpoints/best/ckpt-<step>.*   the weights (model, EMA) of the best evaluation, and
  checkpoints/best/best.json       {"step", "top1", "top5", "loss"} of that evaluation
  train/, validation/              TensorBoard events (official/training/summaries.py)
  evaluation/, cam/                what `official.evaluate` and `official.cam` write

Everything that starts from a trained run — evaluation, export, prediction, class activation
maps, transfer learning, distillation — gets its model from `load_trained_model`, which rebuilds
the architecture from config.json (`build_model`, also how training builds it) and loads the
weights of a checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shutil
import socket
import tempfile
import time
from typing import NamedTuple

import keras
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

from official import atomic
from official import config as config_lib
from official.data import preprocess, sources
from official.errors import UserError
from official.models import filter_pruning, heads, registry

CONFIG_FILE = "config.json"
LOCK_FILE = "train.lock"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_FILE = "best.json"
# Names of the objects inside a checkpoint: the trained model, its moving average, and the
# input pipeline's position (the others are the Checkpointer's callers' choice).
MODEL_KEY = "model"
EMA_KEY = "ema"
INPUT_KEY = "iterator"


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_DIR)


def best_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_DIR, BEST_DIR)


def is_run(path: str) -> bool:
    """Whether `path` is a run directory (it has a config.json)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


class RunBusyError(UserError):
    """Another live process is training in the run directory."""


def _process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, Linux), "" if unknown: tells a live
    process from a later one that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(record: dict) -> bool:
    """Whether the process a lock names still runs (assumed so on another host)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    started = record.get("process_start", "")
    return not started or started == _process_start(pid)


class RunLock:
    """One run directory, one writer: an advisory lock file holding the trainer's host and pid.

    `official.train` (its chief, in a multi-worker job) holds it while it writes the run. A
    second trainer refuses with one line naming the first; a lock left by a process that no
    longer runs (killed, host rebooted) is taken over with a warning. Readers (evaluate,
    export, predict, CAM) do not lock.

    Raises (on entering):
      RunBusyError: another live process holds the lock.
      OutputError: the directory cannot be created or written.
    """

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def _holder(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # Unreadable or half-written: treated as stale.

    def __enter__(self) -> RunLock:
        atomic.ensure_directory(self.model_dir, "--model_dir")
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder()
            if holder and _alive(holder):
                raise RunBusyError(
                    f"--model_dir={self.model_dir}: process {holder.get('pid')} on "
                    f"{holder.get('host')} has been training there since {holder.get('since')}; "
                    f"use another --model_dir, or delete {self.path} if that process is gone"
                ) from None
            logging.warning("taking over %s, left by a process that no longer runs", self.path)
            atomic.write_json(self.path, self.record)
        except OSError as e:
            raise atomic.OutputError(f"--model_dir={self.model_dir}: {e.strerror or e}") from None
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8") as f:
                json.dump(self.record, f)
        if self._holder() != self.record:  # Another process took it over at the same moment.
            raise RunBusyError(f"--model_dir={self.model_dir}: another trainer took {self.path}")
        return self

    def __exit__(self, *exc) -> None:
        if self._holder() == self.record:
            os.remove(self.path)


# ------------------------------------------------------------------ config, labels, metrics


def config_json(config: config_lib.Config, derived: config_lib.Derived | None = None) -> str:
    """The text of config.json: {"config": {...}, "derived": {...}}."""
    return json.dumps(config_lib.to_dict(config, derived), indent=2, sort_keys=True)


def save_config(model_dir: str, config: config_lib.Config, derived: config_lib.Derived) -> str:
    """Writes config.json; returns its path."""
    return atomic.write_text(
        os.path.join(model_dir, CONFIG_FILE), config_json(config, derived) + "\n"
    )


def load_config(model_dir: str) -> tuple[config_lib.Config, config_lib.Derived | None]:
    """A run's resolved Config and Derived values, from its config.json.

    Raises:
      ConfigError: model_dir has no config.json.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise config_lib.ConfigError(
            f"--model_dir={model_dir}: no {CONFIG_FILE} (not a training run dir?)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return config_lib.from_dict(json.load(f))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0][:120] or "empty"
        raise config_lib.ConfigError(
            f"{path}: not a run configuration this package wrote ({type(e).__name__}: {reason})"
        ) from None


def labels_path(model_dir: str) -> str:
    return os.path.join(model_dir, LABELS_FILE)


def save_labels(model_dir: str, class_names) -> str:
    return atomic.write_text(labels_path(model_dir), "\n".join(class_names) + "\n")


def read_labels(model_dir: str) -> list[str]:
    """The run's class names in label order.

    Raises:
      ConfigError: the run has no labels.txt.
    """
    path = labels_path(model_dir)
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"--model_dir={model_dir}: no {path}")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise config_lib.ConfigError(f"{path}: unreadable ({e})") from None


def save_metrics(model_dir: str, metrics: dict) -> str:
    return atomic.write_json(os.path.join(model_dir, METRICS_FILE), metrics)


def save_best_record(model_dir: str, step: int, metrics: dict) -> str:
    """checkpoints/best/best.json: the step and numbers of the best evaluation."""
    record = {"step": step, **{key: metrics[key] for key in ("top1", "top5", "loss")}}
    return atomic.write_json(os.path.join(best_dir(model_dir), BEST_FILE), record)


# ------------------------------------------------------------------------------ checkpoints


def latest_checkpoint(model_dir: str) -> str | None:
    """Path prefix of the newest checkpoint of a run (`.../checkpoints/ckpt-<step>`), or None."""
    checkpoints = checkpoints_newest_first(checkpoint_dir(model_dir))
    return checkpoints[0] if checkpoints else None


def checkpoints_newest_first(directory: str) -> list[str]:
    """The checkpoints in a directory, newest (highest step) first, found by their index files
    (so a damaged `checkpoint` state file hides none)."""
    steps = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        match = re.fullmatch(r"ckpt-(\d+)\.index", name)
        if match:
            steps.append(int(match.group(1)))
    return [os.path.join(directory, f"ckpt-{step}") for step in sorted(steps, reverse=True)]


# What reading a damaged checkpoint raises: a truncated .index (DataLossError and other
# OpErrors), a truncated .data ("Read less bytes than requested": IndexError).
_UNREADABLE = (tf.errors.OpError, IndexError, EOFError, OSError)


class UnreadableCheckpointError(ValueError):
    """A checkpoint whose files cannot be read (truncated, missing, damaged)."""


def _disk_full(error: Exception) -> bool:
    return isinstance(error, tf.errors.ResourceExhaustedError) or "No space left" in str(error)


def best_checkpoint(model_dir: str) -> str | None:
    """Path prefix of the run's best-evaluation checkpoint, or None."""
    return tf.train.latest_checkpoint(best_dir(model_dir))


def saved_objects(checkpoint: str) -> set[str]:
    """Top-level names of the objects in a checkpoint ("model", "ema", "optimizer", ...).

    Read from the checkpoint's object graph, not from its variable names: a variable reachable
    from two objects is named after one of them only (a model whose weights are all trainable
    has them named under "optimizer/"), yet both objects were saved.
    """
    reader = tf.train.load_checkpoint(checkpoint)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {child.local_name for child in graph.nodes[0].children}


def has_ema(checkpoint: str) -> bool:
    """Whether a checkpoint holds EMA weights."""
    return EMA_KEY in saved_objects(checkpoint)


def restore_weights(model, checkpoint: str, *, ema: bool = False) -> bool:
    """Loads only weights from a training checkpoint (no optimizer state).

    Args:
      model: a model of the checkpoint's architecture.
      checkpoint: a checkpoint path prefix.
      ema: load the exponential moving average of the weights if the checkpoint has one.

    Returns:
      True if the EMA weights were loaded.

    Raises:
      ValueError: the checkpoint holds no weights for this model (wrong model or file).
    """
    try:
        use_ema = ema and has_ema(checkpoint)
        status = tf.train.Checkpoint(**{EMA_KEY if use_ema else MODEL_KEY: model}).read(checkpoint)
    except (*_UNREADABLE, ValueError) as e:
        if isinstance(e, ValueError) and "incompatible" in str(e):  # A shape that differs.
            raise ValueError(f"{checkpoint} does not match the model: {e}") from None
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UnreadableCheckpointError(
            f"{checkpoint}: not a readable checkpoint ({reason})"
        ) from None
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"{checkpoint} does not match the model: {e}") from None
    return use_ema


class Checkpointer:
    """Saves and restores the training state under model_dir/checkpoints.

    Every worker of a multi-worker run takes part in saving (TensorFlow expects it), but only the
    chief's files are kept: the others write into a temporary directory that is removed at once.
    Every worker restores from the chief's directory.

    Args:
      model_dir: the run's directory.
      is_chief: whether this process owns the run's files.
      keep: number of recent checkpoints to keep.
      trackables: objects to save, by name (model=..., optimizer=..., ema=..., iterator=...).
    """

    def __init__(self, model_dir: str, *, is_chief: bool = True, keep: int = 3, **trackables):
        self.model_dir = model_dir
        self.directory = checkpoint_dir(model_dir)
        self.best_directory = best_dir(model_dir)
        self.is_chief = is_chief
        self.trackables = {k: v for k, v in trackables.items() if v is not None}
        self.checkpoint = tf.train.Checkpoint(**self.trackables)
        self.keep = keep
        weights = {k: v for k, v in self.trackables.items() if k in (MODEL_KEY, EMA_KEY)}
        self._best_checkpoint = tf.train.Checkpoint(**weights)
        self._managers: dict[str, tf.train.CheckpointManager] = {}

    @property
    def latest(self) -> str | None:
        return latest_checkpoint(self.model_dir)

    def restore_latest(self) -> str | None:
        """Restores the newest readable checkpoint if there is one; returns its path.

        A checkpoint that cannot be read (truncated by a full disk or a copy) is passed over
        with a warning for the one before it. Objects the checkpoint does not hold (e.g. the
        input position of a run saved with --config.runtime.checkpoint_input=false) keep their
        fresh state; everything the checkpoint holds must match.

        Raises:
          ValueError: the checkpoint belongs to a different model or configuration, or none of
            the run's checkpoints can be read.
        """
        candidates = checkpoints_newest_first(self.directory)
        for path in candidates:
            try:
                return self._restore(path)
            except _UNREADABLE as e:
                reason = str(e).strip().splitlines()[0][:200] or type(e).__name__
                logging.warning("%s cannot be read (%s); trying the one before it", path, reason)
        if candidates:
            raise ValueError(
                f"none of the {len(candidates)} checkpoints in {self.directory} can be read; "
                "use a new --model_dir"
            )
        return None

    def _restore(self, path: str) -> str:
        saved = saved_objects(path)
        missing = sorted(set(self.trackables) - saved)
        if MODEL_KEY in missing:
            raise ValueError(f"{path} holds no model weights")
        if missing:
            logging.warning("%s has no %s; those start fresh", path, ", ".join(missing))
        present = {k: v for k, v in self.trackables.items() if k in saved}
        try:
            status = tf.train.Checkpoint(**present).restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            message = str(e).strip().splitlines()[0][:300]
            raise ValueError(
                f"cannot resume from {path} (a different model or configuration?): {message}. "
                "Use a new --model_dir, or the configuration that wrote it."
            ) from None
        logging.info("restored %s", path)
        return path

    def _write(self, checkpoint: tf.train.Checkpoint, directory: str, step: int, keep: int) -> str:
        if self.is_chief:
            if directory not in self._managers:
                self._managers[directory] = tf.train.CheckpointManager(
                    checkpoint, directory, max_to_keep=keep
                )
            return self._managers[directory].save(checkpoint_number=step)
        scratch = tempfile.mkdtemp(prefix="worker-checkpoint-")
        try:
            checkpoint.write(os.path.join(scratch, "ckpt"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return os.path.join(directory, f"ckpt-{step}")

    def save(self, step: int) -> str:
        """Writes `ckpt-<step>` (TensorFlow writes under a temporary name, then renames).

        An input pipeline that cannot be serialized (a py_function, a tf.data service job, ...)
        is left out from then on, with a warning: a resumed run then restarts its input.
        """
        try:
            return self._write(self.checkpoint, self.directory, step, self.keep)
        except tf.errors.OpError as e:
            if _disk_full(e):
                raise self._disk_full_error(step) from None
            if INPUT_KEY not in self.trackables:
                raise
            logging.warning(
                "checkpoints leave out the input pipeline, which cannot be saved (%s); a resumed "
                "run restarts its input",
                str(e).strip().splitlines()[0][:200],
            )
            del self.trackables[INPUT_KEY]
            self.checkpoint = tf.train.Checkpoint(**self.trackables)
            self._managers.pop(self.directory, None)
            return self._write(self.checkpoint, self.directory, step, self.keep)

    def save_best(self, step: int, metrics: dict) -> str:
        """Writes the weights of a new best evaluation to checkpoints/best (replacing the old)."""
        try:
            path = self._write(self._best_checkpoint, self.best_directory, step, 1)
            if self.is_chief:
                save_best_record(self.model_dir, step, metrics)
        except (tf.errors.OpError, OSError) as e:
            if _disk_full(e):
                raise self._disk_full_error(step) from None
            raise
        return path

    def _disk_full_error(self, step: int) -> atomic.OutputError:
        return atomic.OutputError(
            f"--model_dir={self.model_dir}: the disk is full (writing the checkpoint of step "
            f"{step}); the latest complete checkpoint, {self.latest or 'none'}, is intact. Free "
            "some space and run the same command again to resume."
        )


def locate(path: str) -> tuple[str | None, str | None]:
    """(run directory, checkpoint) of a run directory or a checkpoint inside one.

    `runs/x` gives ("runs/x", None: its latest checkpoint); `runs/x/checkpoints/ckpt-5` and
    `runs/x/checkpoints/best/ckpt-5` give ("runs/x", that checkpoint); a checkpoint outside any
    run gives (None, path).
    """
    path = os.path.normpath(path)
    if is_run(path):
        return path, None
    directory = os.path.dirname(path)
    for _ in range(2):
        if os.path.basename(directory) == CHECKPOINT_DIR and is_run(os.path.dirname(directory)):
            return os.path.dirname(directory), path
        directory = os.path.dirname(directory)
    return None, path


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: a training run and which of its checkpoints (None: the latest)."""

    model_dir: str
    checkpoint: str | None = None

    @property
    def name(self) -> str:
        return self.checkpoint or self.model_dir


def parse_members(value: str) -> list[Member]:
    """Parses `--ensemble=DIR1,DIR2,...`; an entry may also be a checkpoint path prefix
    (`DIR/checkpoints/ckpt-1000`) to ensemble several checkpoints of one run.

    Raises:
      ConfigError: an entry that is neither a run directory nor a checkpoint of one, or fewer
        than two members.
    """
    members = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        if not is_run(entry) and not os.path.isfile(entry + ".index"):
            raise config_lib.ConfigError(
                f"--ensemble: {entry} is neither a training run directory (with "
                f"{CONFIG_FILE}) nor a checkpoint (no {entry}.index)"
            )
        model_dir, checkpoint = locate(entry)
        if model_dir is None:
            raise config_lib.ConfigError(
                f"--ensemble: {entry} is not inside a run's {CHECKPOINT_DIR}/ directory"
            )
        members.append(Member(model_dir, checkpoint))
    if len(members) < 2:
        raise config_lib.ConfigError(
            f"--ensemble={value!r}: expected at least two comma-separated runs or checkpoints"
        )
    return members


# ---------------------------------------------------------------------------- the model


def _non_negative(value) -> bool:
    return value >= 0


def _positive(value) -> bool:
    return value > 0


# `--config.model.*` fields that set a builder argument: (field, argument, whether the field is
# set). Unset fields keep the variant's defaults; -1 is "unset" where 0 means something (no
# dropout, no SE, no stochastic depth). A field named differently from its argument switches
# that argument on (an auxiliary-loss weight needs the auxiliary head).
_BUILDER_SWITCHES = (
    ("width_multiplier", "width_multiplier", bool),
    ("dropout", "dropout", _non_negative),
    ("zero_gamma", "zero_gamma", bool),
    ("activation", "activation", bool),
    ("normalization", "normalization", bool),
    ("padding", "padding", bool),
    ("norm_epsilon", "norm_epsilon", _positive),
    ("aux_loss_weight", "aux_head", _positive),
    ("head_batch_norm", "head_batch_norm", bool),
    ("kernel_initializer", "kernel_initializer", bool),
    ("output_stride", "output_stride", bool),
    ("se_ratio", "se_ratio", _non_negative),
    ("stochastic_depth_rate", "stochastic_depth_rate", _non_negative),
    ("resolution_multiplier", "resolution_multiplier", bool),
)


def model_overrides(model_config: config_lib.ModelConfig, spec: registry.ModelSpec) -> dict:
    """Builder arguments set by `--config.model.*` (unset fields keep the variant's defaults).

    Raises:
      ConfigError: a switch that the model's builder does not have.
    """
    accepted = inspect.signature(spec.builder).parameters
    overrides = {}
    for field, argument, is_set in _BUILDER_SWITCHES:
        value = getattr(model_config, field)
        if not is_set(value):
            continue
        if argument not in accepted:
            raise config_lib.ConfigError(
                f"--config.model.{field}: not a switch of {spec.name} ({spec.family} family)"
            )
        overrides[argument] = value if field == argument else True
    return overrides


def build_model(config: config_lib.Config) -> keras.Model:
    """The model of a resolved config: logits, normalization from data.mean/std.

    With `model.aux_loss_weight` > 0 the model returns {"logits", "aux_logits"...}, as trained.
    """
    spec = registry.get(config.model.name)
    try:
        model = spec.build(
            num_classes=config.model.num_classes,
            image_size=config.data.image_size,
            mean=config.data.mean,
            std=config.data.std,
            **model_overrides(config.model, spec),
        )
    except ValueError as e:
        raise config_lib.ConfigError(f"--config.model.name={spec.name}: {e}") from e
    fractions = config.model.filter_prune_fractions
    if not fractions:
        return model
    # The filter-pruned architecture (which filters survive only matters to the weights).
    try:
        return filter_pruning.prune_filters(model, fractions).model
    except ValueError as e:
        raise config_lib.ConfigError(f"--config.model.filter_prune_fractions: {e}") from e


def open_source(
    config: config_lib.Config, location: str = "", bad_records: str = ""
) -> sources.Source:
    """The data source a config names (or `location`, a `--config.data.source` value, instead),
    with the config's settings (synthetic, TFDS, pixel limit, `bad_records` unless given)."""
    data = config.data
    return sources.open_source(
        location or data.source,
        num_classes=config.model.num_classes,
        synthetic_examples=data.synthetic_examples,
        tfds_data_dir=data.tfds_data_dir,
        tfds_manual_dir=data.tfds_manual_dir,
        max_image_pixels=data.max_image_pixels,
        bad_records=bad_records or data.bad_records,
    )


def geometry(config: config_lib.Config) -> preprocess.Geometry:
    """The input geometry of a run's config: size, evaluation crop, resize method.

    A field a config leaves at "the model's reference" (0, "") is the model's: a trained run
    records every value, a converted one (`weights_lib.convert`) only the resolution.
    """
    data, spec = config.data, registry.get(config.model.name)
    return preprocess.Geometry(
        data.image_size or spec.default_resolution,
        data.crop_fraction or spec.crop_fraction,
        data.interpolation or spec.interpolation,
    )


class TrainedModel(NamedTuple):
    """A run's model with trained weights, and where they came from."""

    model: keras.Model  # One logits output (auxiliary heads dropped).
    config: config_lib.Config
    derived: config_lib.Derived | None
    checkpoint: str


def load_trained_model(
    model_dir: str, *, checkpoint: str | None = None, ema: bool = True
) -> TrainedModel:
    """Rebuilds a run's model from its config.json and loads trained weights.

    Args:
      model_dir: a training run's directory.
      checkpoint: a checkpoint path prefix; None for the run's latest (`best_checkpoint`
        gives the best evaluation's).
      ema: load the exponential moving average of the weights when the run kept one
        (`--config.train.ema_decay`), as its evaluations did; False: the raw trained weights.

    Raises:
      ConfigError: no config.json or no checkpoint in model_dir, or a checkpoint that does
        not fit the model.
    """
    config, derived = load_config(model_dir)
    candidates = [checkpoint] if checkpoint else checkpoints_newest_first(checkpoint_dir(model_dir))
    if not candidates:
        raise config_lib.ConfigError(
            f"--model_dir={model_dir}: no checkpoint in {checkpoint_dir(model_dir)}"
        )
    model = build_model(config)
    for path in candidates:
        try:
            used_ema = restore_weights(model, path, ema=ema)
            break
        except UnreadableCheckpointError as e:
            if checkpoint:  # The one the user named.
                raise config_lib.ConfigError(f"--checkpoint: {e}") from e
            logging.warning("%s; trying the checkpoint before it", e)
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from e
    else:
        raise config_lib.ConfigError(
            f"--model_dir={model_dir}: none of its {len(candidates)} checkpoints can be read"
        )
    logging.info("loaded %s weights from %s", "EMA" if used_ema else "trained", path)
    return TrainedModel(heads.main_output_model(model), config, derived, path)
