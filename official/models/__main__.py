"""Prints the model zoo, or converts weights for one model.

`python -m official.models [NAME ...]`: for every registered model (or the names given,
including `efficientnet_phi<φ>`): trainable parameters, how many of them are binary (1-bit
kernels of binary networks, official/models/binary.py), and multiply-adds at its default
resolution with 1,000 classes, the default resolution, and the eval crop (center-crop
fraction, the resize it implies, interpolation). Building every model takes a few minutes on 2
cores; progress goes to stderr.

`python -m official.models --convert=PATH --model=NAME --out=DIR`: reads a keras.applications
`.h5`, a PyTorch `.pth` / `.pt` or a `.safetensors` file, ports it into NAME and writes DIR, a
run directory every command starts from (`--config.model.init_weights=DIR`, `--model_dir=DIR`
for evaluate / export / predict), with NAME.weights.h5 for plain Keras use.
"""

from __future__ import annotations

import json
import math

from absl import app, flags

from official import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("convert", "", "Weights file to convert (.h5, .pth/.pt, .safetensors).")
flags.DEFINE_string("model", "", "Registry name of the architecture the weights are for.")
flags.DEFINE_string("out", "", "New directory to write the converted run into.")
flags.DEFINE_string("format", "", "Force the file format: keras_h5, torch, safetensors.")
flags.DEFINE_string(
    "layout",
    "",
    "Force the PyTorch layout: torchvision, timm, timm_tf (timm's tf_ models), lukemelas.",
)
flags.DEFINE_string("keras_application", "", "keras.applications constructor of an .h5.")

COLUMNS = ("name", "family", "params", "binary", "GMACs", "resolution", "eval crop")


def rows(names: list[str]):
    """Yields one table row per model name."""
    import keras

    from official.models import binary, count_flops, registry

    for name in names:
        spec = registry.get(name)
        model = spec.build(image_size=spec.default_resolution, num_classes=1000)
        params = sum(math.prod(weight.shape) for weight in model.trainable_weights)
        binary_params = binary.parameter_split(model).binary
        resize = round(spec.default_resolution / spec.crop_fraction)
        yield (
            name,
            spec.family,
            f"{params:,}",
            f"{binary_params:,}",
            f"{count_flops(model) / 1e9:.3f}",
            str(spec.default_resolution),
            f"{spec.crop_fraction:.3f} ({resize}→{spec.default_resolution}, {spec.interpolation})",
        )
        del model
        keras.backend.clear_session()


def convert(argv: list[str]) -> None:
    from official import config as config_lib
    from official import weights_lib

    with cli.user_errors():
        if len(argv) > 1:
            raise config_lib.ConfigError(f"--convert takes no model names, got {argv[1:]}")
        for flag in ("model", "out"):
            if not getattr(FLAGS, flag):
                raise config_lib.ConfigError(f"--convert needs --{flag}")
        summary = weights_lib.convert(
            FLAGS.convert,
            FLAGS.model,
            FLAGS.out,
            file_format=FLAGS.format,
            layout=FLAGS.layout,
            keras_application=FLAGS.keras_application,
        )
    print(json.dumps(summary, indent=2))


def main(argv: list[str]) -> None:
    from official.models import registry
    from official.progress import Progress

    if FLAGS.is_parsed() and FLAGS.convert:
        convert(argv)
        return
    with cli.user_errors():
        names = argv[1:] or registry.names()
        for name in names:
            registry.get(name)  # Fail on a bad name before building anything.
        progress = Progress(len(names), "models", unit="model")
        table = []
        for count, row in enumerate(rows(names), start=1):
            table.append(row)
            progress.update(count, model=row[0])
        progress.close()
    widths = [max(len(str(r[i])) for r in (COLUMNS, *table)) for i in range(len(COLUMNS))]
    for row in (COLUMNS, *table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
