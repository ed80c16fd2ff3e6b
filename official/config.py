"""The experiment configuration: one tree of dataclasses, exposed as `--config.*` flags.

Every hyperparameter has exactly one field here and is read by exactly one function. Fields
whose default means "take it from the model or the dataset" (0, "" or ()) are filled in by
`resolve()`, which also computes the derived values (scaled learning rate, steps per epoch)
once, so they are logged and saved with the run instead of being written into flagfiles.
"""

import dataclasses
import json
import math
import os
from typing import Any


@dataclasses.dataclass
class ModelConfig:
    """Which architecture, and the switches passed to its builder.

    Zero/empty values mean "the registered variant's own default".
    """

    name: str = "resnet50"  # A registry name: `python -m official.models` lists them.
    num_classes: int = 0  # 0: the dataset's number of classes.
    width_multiplier: float = 0.0  # 0: the variant's width.
    dropout: float = -1.0  # < 0: the variant's dropout before the classifier.
    zero_gamma: bool = False  # Zero-init the last BN of each residual branch.
    activation: str = ""  # "": the variant's activation.
    normalization: str = ""  # "": the variant's normalization ("batch", "sync_batch", ...).


@dataclasses.dataclass
class DataConfig:
    """Where the images come from and how they are prepared."""

    # "folder:PATH" (PATH/train/<class>/*, PATH/validation/<class>/*), "tfrecord:DIR_OR_PATTERN",
    # "tfds:NAME", or "synthetic" (random images, for benchmarks and smoke tests).
    source: str = "synthetic"
    image_size: int = 0  # 0: the model's reference resolution.
    crop_fraction: float = 0.0  # Eval center-crop fraction; 0: the model's reference value.
    interpolation: str = ""  # Eval resize method; "": the model's reference ("bilinear", ...).
    mean: tuple[float, ...] = ()  # Per-channel mean on 0..255; (): the model's (ImageNet).
    std: tuple[float, ...] = ()  # Per-channel std on 0..255; (): the model's (ImageNet).
    # Training crop: "inception" (random area 8-100%, aspect 3/4-4/3; Szegedy et al. arXiv
    # 1409.4842 §6) or "resize" (the whole image resized, for tiny images such as digits).
    train_crop: str = "inception"
    random_flip: bool = True  # Random horizontal flip in training.
    shuffle_buffer: int = 10_000  # Examples in the training shuffle buffer.
    cache: bool = False  # Cache decoded-but-unaugmented bytes in memory (small datasets).
    synthetic_examples: int = 1024  # Examples per epoch of the synthetic source.


@dataclasses.dataclass
class TrainConfig:
    """Optimization."""

    batch_size: int = 256  # Global batch size, split across replicas.
    epochs: float = 90.0
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adam".
    momentum: float = 0.9
    nesterov: bool = False
    # Learning rate per 256 images; the run uses base × batch_size / 256 (linear scaling rule,
    # Goyal et al. arXiv 1706.02677 §2.1).
    base_learning_rate: float = 0.1
    lr_schedule: str = "cosine"  # "cosine" (Loshchilov & Hutter arXiv 1608.03983) or "constant".
    warmup_epochs: float = 0.0  # Linear warmup from 0 (arXiv 1706.02677 §2.2).
    weight_decay: float = 1e-4  # Decoupled; not applied to biases and normalization parameters.
    label_smoothing: float = 0.0  # Szegedy et al. arXiv 1512.00567 §7.
    eval_batch_size: int = 0  # 0: batch_size.


@dataclasses.dataclass
class RuntimeConfig:
    """Devices, precision, logging and checkpoints."""

    # "mirrored" (all local GPUs, or the CPU), "one_device", "multi_worker_mirrored", "tpu".
    distribution_strategy: str = "mirrored"
    num_gpus: int = -1  # -1: every visible GPU.
    # Split the CPU into this many logical devices (> 1 lets mirrored run several replicas
    # on a CPU-only machine, e.g. to test distribution).
    num_cpu_devices: int = 1
    precision: str = "float32"  # "float32", "mixed_bfloat16", "mixed_float16", "auto".
    seed: int = 0
    log_every_steps: int = 10  # Progress bar, console and TensorBoard scalars.
    checkpoint_every_steps: int = 0  # 0: at the end of every epoch only.
    keep_checkpoints: int = 3


@dataclasses.dataclass
class Config:
    """The whole experiment."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class Derived:
    """Values computed once from the config, the model and the dataset; logged and saved."""

    num_classes: int
    num_train_examples: int
    num_eval_examples: int
    learning_rate: float  # base_learning_rate × batch_size / 256.
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_batch_size: int


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag and what is expected."""


_CHOICES = {
    "data.train_crop": ("inception", "resize"),
    "data.interpolation": ("bilinear", "bicubic", "nearest", "area"),
    "train.optimizer": ("sgd", "adam"),
    "train.lr_schedule": ("cosine", "constant"),
    "runtime.distribution_strategy": ("mirrored", "one_device", "multi_worker_mirrored", "tpu"),
    "runtime.precision": ("float32", "mixed_bfloat16", "mixed_float16", "auto"),
}


def _check(condition: bool, flag: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"--config.{flag}={value!r}: expected {expected}")


def validate(config: Config) -> None:
    """Raises ConfigError, naming the flag, for values no run can use."""
    for flag, choices in _CHOICES.items():
        section, field = flag.split(".")
        value = getattr(getattr(config, section), field)
        if flag == "data.interpolation" and value == "":
            continue
        _check(value in choices, flag, value, "one of " + ", ".join(choices))
    _check(config.train.batch_size > 0, "train.batch_size", config.train.batch_size, "> 0")
    _check(config.train.epochs > 0, "train.epochs", config.train.epochs, "> 0")
    _check(config.data.image_size >= 0, "data.image_size", config.data.image_size, ">= 0")
    _check(
        0 <= config.data.crop_fraction <= 1,
        "data.crop_fraction",
        config.data.crop_fraction,
        "in (0, 1], or 0 for the model's default",
    )
    for field in ("mean", "std"):
        value = getattr(config.data, field)
        _check(len(value) in (0, 3), f"data.{field}", value, "3 values (one per channel) or ()")
    _check(all(s > 0 for s in config.data.std), "data.std", config.data.std, "positive values")
    _check(
        0 <= config.train.label_smoothing < 1,
        "train.label_smoothing",
        config.train.label_smoothing,
        "in [0, 1)",
    )
    _check(
        config.runtime.log_every_steps > 0,
        "runtime.log_every_steps",
        config.runtime.log_every_steps,
        "> 0",
    )
    _check(
        config.runtime.num_cpu_devices >= 1,
        "runtime.num_cpu_devices",
        config.runtime.num_cpu_devices,
        ">= 1",
    )


def resolve(
    config: Config, *, spec, num_classes: int, num_train_examples: int, num_eval_examples: int
) -> tuple[Config, Derived]:
    """Fills "use the default" fields and computes the derived values.

    Args:
      config: the parsed configuration (not modified).
      spec: the model's registry.ModelSpec (reference resolution, crop, interpolation, mean/std).
      num_classes: classes in the dataset.
      num_train_examples: examples in the training split.
      num_eval_examples: examples in the evaluation split.

    Returns:
      (config with every default filled in, derived values).
    """
    validate(config)
    resolved = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model),
        data=dataclasses.replace(config.data),
        train=dataclasses.replace(config.train),
        runtime=dataclasses.replace(config.runtime),
    )
    data, model, train = resolved.data, resolved.model, resolved.train
    data.image_size = data.image_size or spec.default_resolution
    data.crop_fraction = data.crop_fraction or spec.crop_fraction
    data.interpolation = data.interpolation or spec.interpolation
    data.mean = tuple(data.mean or spec.mean)
    data.std = tuple(data.std or spec.std)
    model.num_classes = model.num_classes or num_classes
    if data.image_size < spec.min_resolution:
        raise ConfigError(
            f"--config.data.image_size={data.image_size}: {spec.name} needs at least "
            f"{spec.min_resolution}"
        )
    if num_train_examples < train.batch_size:
        raise ConfigError(
            f"--config.train.batch_size={train.batch_size}: larger than the "
            f"{num_train_examples} training examples"
        )
    steps_per_epoch = num_train_examples // train.batch_size
    derived = Derived(
        num_classes=model.num_classes,
        num_train_examples=num_train_examples,
        num_eval_examples=num_eval_examples,
        learning_rate=train.base_learning_rate * train.batch_size / 256,
        steps_per_epoch=steps_per_epoch,
        total_steps=max(1, math.ceil(train.epochs * steps_per_epoch)),
        warmup_steps=int(round(train.warmup_epochs * steps_per_epoch)),
        eval_batch_size=train.eval_batch_size or train.batch_size,
    )
    return resolved, derived


CONFIG_FILE = "config.json"


def to_json(config: Config, derived: Derived | None = None) -> str:
    """The run's configuration as JSON: {"config": {...}, "derived": {...}}."""
    payload = {"config": dataclasses.asdict(config)}
    if derived is not None:
        payload["derived"] = dataclasses.asdict(derived)
    return json.dumps(payload, indent=2, sort_keys=True)


def save(model_dir: str, config: Config, derived: Derived) -> str:
    """Writes `model_dir/config.json` atomically and returns its path."""
    path = os.path.join(model_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(to_json(config, derived))
    os.replace(tmp, path)
    return path


def _from_dict(cls, values: dict):
    """Rebuilds a (nested) config dataclass from `dataclasses.asdict` output."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        factory = field.default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            value = _from_dict(factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def load(model_dir: str) -> tuple[Config, Derived | None]:
    """Reads a run's `config.json` back into a Config (and its Derived values)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"--model_dir={model_dir}: no {CONFIG_FILE} (not a training run dir?)")
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    config = _from_dict(Config, payload["config"])
    derived = Derived(**payload["derived"]) if "derived" in payload else None
    return config, derived
