"""The pictures of an evaluation: confusion matrix, per-class accuracy, CAM panels.

Each `*_figure` function returns a matplotlib Figure of a fixed pixel size (so TensorBoard can
stack them and tests can check them); `pixels` renders one to an RGB uint8 array and
`save_png` writes that array atomically. Figures are drawn on the Agg canvas directly
(`matplotlib.figure.Figure`, not pyplot): nothing global is switched or kept open, and the
PNG bytes come from Pillow, so drawing the same numbers again writes the same file.

Colours are perceptually uniform maps (viridis for shares, inferno for heat; van der Walt &
Smith, "A better default colormap for Matplotlib", SciPy 2015): equal steps of the value look
like equal steps of colour, and the ramp stays readable in greyscale, which the jet-like ramp
used before did not (its dark-blue low end hid the image).

Up to READABLE_CLASSES classes every cell of the confusion matrix carries its count and every
class its tick label; above that the cells carry colour only and every n-th class is labelled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from official import atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
# Confusion matrix and per-class bars: labels stay readable up to this many classes.
READABLE_CLASSES = 30
CONFUSION_SIZE = (900, 800)  # pixels (width, height)
BARS_SIZE = (1000, 450)
# CAM: three square panels (image, heat map with its colour bar, overlay) and a title band.
CAM_SIZE = (1200, 460)
SHARE_COLORMAP = "viridis"
HEAT_COLORMAP = "inferno"
HEAT_OPACITY = 0.55
# Class names longer than this are cut with "…" (ImageNet's carry every synonym).
NAME_CHARACTERS = 28
TOP_K_SHOWN = 3


def _figure(size: tuple[int, int]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def pixels(figure: Figure) -> np.ndarray:
    """The figure rendered as an (H, W, 3) uint8 array of exactly its pixel size."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_png(picture: np.ndarray, path: str) -> str:
    """Writes an RGB uint8 array as a PNG (atomically), creating its directory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic.open_file(path, "wb") as f:
        Image.fromarray(picture).save(f, format="PNG")
    return path


def short_name(name: str) -> str:
    name = str(name)
    return name if len(name) <= NAME_CHARACTERS else name[: NAME_CHARACTERS - 1] + "…"


def label_step(count: int) -> int:
    """Every how many classes a tick label is written (1 up to READABLE_CLASSES)."""
    return max(1, math.ceil(count / READABLE_CLASSES))


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total: the share of a true class predicted as each class
    (a class without examples stays 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)


def _class_ticks(axis, names: Sequence[str], which: str, rotation: float = 0.0) -> None:
    step = label_step(len(names))
    positions = list(range(0, len(names), step))
    labels = [short_name(names[i]) for i in positions]
    fontsize = 9 if len(positions) <= 15 else 7
    if which == "x":
        axis.set_xticks(positions, labels, rotation=rotation, ha="right" if rotation else "center")
        axis.tick_params(axis="x", labelsize=fontsize)
    else:
        axis.set_yticks(positions, labels)
        axis.tick_params(axis="y", labelsize=fontsize)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix coloured by row share (rows: true class, columns: predicted),
    each cell with its count up to READABLE_CLASSES classes, each row label with the class's
    number of examples."""
    matrix = np.asarray(matrix)
    count = len(matrix)
    shares = row_shares(matrix)
    figure = _figure(CONFUSION_SIZE)
    axis = figure.add_axes((0.2, 0.17, 0.62, 0.75))
    image = axis.imshow(
        shares, cmap=SHARE_COLORMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto"
    )
    colorbar = figure.colorbar(image, cax=figure.add_axes((0.85, 0.17, 0.025, 0.75)))
    colorbar.set_label("share of the true class (row-normalised)")
    rotation = 45.0 if count > 8 or max(map(len, map(str, class_names)), default=0) > 4 else 0.0
    _class_ticks(axis, list(class_names), "x", rotation)
    totals = matrix.sum(axis=1)
    _class_ticks(axis, [f"{short_name(n)} ({int(t)})" for n, t in zip(class_names, totals)], "y")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class (examples)")
    if count <= READABLE_CLASSES:
        fontsize = 10 if count <= 12 else 7 if count <= 20 else 5.5
        for (row, column), value in np.ndenumerate(matrix):
            if value:
                # viridis is dark at 0 and bright at 1: white text on the dark half.
                colour = "black" if shares[row, column] > 0.6 else "white"
                axis.text(
                    column,
                    row,
                    str(int(value)),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color=colour,
                )
    suffix = "" if count <= READABLE_CLASSES else f"; one class in {label_step(count)} named"
    figure.suptitle(
        f"{title + ': ' if title else ''}confusion matrix, {int(totals.sum())} examples{suffix}",
        fontsize=12,
    )
    return figure


def per_class_accuracy_figure(
    accuracies: np.ndarray, class_names: Sequence[str], title: str = ""
) -> Figure:
    """One bar per class (its top-1 accuracy, i.e. recall), the mean as a dashed line; a class
    without examples (NaN) gets no bar and "n/a" in its label."""
    accuracies = np.asarray(accuracies, dtype=np.float64)
    count = len(accuracies)
    figure = _figure(BARS_SIZE)
    axis = figure.add_axes((0.08, 0.25, 0.9, 0.65))
    positions = np.arange(count)
    axis.bar(
        positions,
        np.nan_to_num(accuracies),
        width=0.8 if count <= 200 else 1.0,
        color=_colour(SHARE_COLORMAP, 0.35),
    )
    if np.isfinite(accuracies).any():
        mean = float(np.nanmean(accuracies))
        axis.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        axis.legend(loc="lower right", fontsize=9)
    axis.set_ylim(0.0, 1.0)
    axis.set_xlim(-0.6, count - 0.4)
    axis.set_ylabel("top-1 accuracy")
    names = [n if np.isfinite(a) else f"{n} (n/a)" for n, a in zip(class_names, accuracies)]
    _class_ticks(axis, names, "x", 45.0 if count > 8 else 0.0)
    axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{title + ': ' if title else ''}per-class accuracy", fontsize=12)
    return figure


def _colour(colormap: str, value: float):
    from matplotlib import colormaps

    return colormaps[colormap](value)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float64)[..., :3] @ np.array([0.299, 0.587, 0.114]) / 255.0


def overlay_pixels(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The heat map in HEAT_COLORMAP blended over the image in grey (colour on colour would
    hide the heat), as (H, W, 3) uint8."""
    from matplotlib import colormaps

    colours = colormaps[HEAT_COLORMAP](np.clip(heat, 0.0, 1.0))[..., :3]
    grey = _grey(image)[..., None]
    blended = (1.0 - HEAT_OPACITY) * grey + HEAT_OPACITY * colours
    return np.round(255.0 * blended).astype(np.uint8)


def cam_figure(
    image: np.ndarray,
    heat: np.ndarray,
    top: Sequence[tuple[str, float]],
    *,
    title: str,
    method: str,
) -> Figure:
    """Three panels side by side: the image the model saw, the heat map (HEAT_COLORMAP, with
    a colour bar) and the heat over the image; above them `title` and the top classes with
    their probabilities.

    Args:
      image: (H, W, 3) on the 0..255 scale.
      heat: (H, W) in [0, 1] (the map scaled per image: 1 is the strongest location).
      top: (class name, probability) of the highest-scoring classes, best first.
      title: what the map is of (e.g. "predicted 7 (0.93), true 1").
      method: "cam" or "grad_cam".
    """
    image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    heat = np.asarray(heat, dtype=np.float64)
    # All panels at the input's own pixels (the heat is already upsampled to them), so a
    # 32 px digit shows as 32 px, not blurred into something it is not.
    figure = _figure(CAM_SIZE)
    width, height = CAM_SIZE
    side = 330 / height  # panel height as a share of the figure
    bottom = 0.04
    lefts_px = (20, 420, 820)
    axes = [figure.add_axes((x / width, bottom, 330 / width, side)) for x in lefts_px]
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=11)
    shown = axes[1].imshow(heat, cmap=HEAT_COLORMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    flat = float(heat.max() - heat.min()) == 0.0
    axes[1].set_title(
        f"{'CAM' if method == 'cam' else 'Grad-CAM'}"
        + (" (flat: no spatial detail)" if flat else ""),
        fontsize=11,
    )
    colorbar_axis = figure.add_axes(((lefts_px[1] + 338) / width, bottom, 12 / width, side))
    figure.colorbar(shown, cax=colorbar_axis).ax.tick_params(labelsize=8)
    axes[2].imshow(overlay_pixels(image, heat), interpolation="nearest")
    axes[2].set_title("overlay", fontsize=11)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    ranked = "   ".join(
        f"{rank}. {short_name(name)} {probability_text(probability)}"
        for rank, (name, probability) in enumerate(top[:TOP_K_SHOWN], start=1)
    )
    figure.text(0.5, 0.95, title, ha="center", va="top", fontsize=13, weight="bold")
    figure.text(
        0.5,
        0.885,
        f"top-{min(len(top), TOP_K_SHOWN)}:  {ranked}",
        ha="center",
        va="top",
        fontsize=11,
    )
    return figure


def probability_text(probability: float) -> str:
    """Three decimals, or two significant digits below 0.001 (not a misleading "0.000")."""
    return f"{probability:.3f}" if probability >= 1e-3 or probability == 0 else f"{probability:.1e}"


def top_classes(
    probabilities: np.ndarray, class_names: Sequence[str], k: int = TOP_K_SHOWN
) -> list[tuple[str, float]]:
    """(name, probability) of the k most probable classes of one example, best first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(str(class_names[c]), float(probabilities[c])) for c in order]
