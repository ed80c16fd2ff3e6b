"""Prints the model zoo: `python -m official.models [NAME ...]`.

For every registered model (or the names given, including `efficientnet_phi<φ>`): trainable
parameters and multiply-adds at its default resolution with 1,000 classes, the default
resolution, and the eval crop (center-crop fraction, the resize it implies, interpolation).
Building every model takes a few minutes on 2 cores; progress goes to stderr.
"""

from __future__ import annotations

import math

from absl import app

from official import cli

COLUMNS = ("name", "family", "params", "GMACs", "resolution", "eval crop")


def rows(names: list[str]):
    """Yields one table row per model name."""
    import keras

    from official.models import count_flops, registry

    for name in names:
        spec = registry.get(name)
        model = spec.build(image_size=spec.default_resolution, num_classes=1000)
        params = sum(math.prod(weight.shape) for weight in model.trainable_weights)
        resize = round(spec.default_resolution / spec.crop_fraction)
        yield (
            name,
            spec.family,
            f"{params:,}",
            f"{count_flops(model) / 1e9:.3f}",
            str(spec.default_resolution),
            f"{spec.crop_fraction:.3f} ({resize}→{spec.default_resolution}, {spec.interpolation})",
        )
        del model
        keras.backend.clear_session()


def main(argv: list[str]) -> None:
    from official.models import registry
    from official.progress import Progress

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
