"""The evaluation's pictures plot what the CSVs say, at their fixed sizes, and are not blank."""

import csv
import io
import math

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from official.evaluation import figures, metrics


def _confusion(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 4, (count, count))
    np.fill_diagonal(matrix, rng.integers(10, 30, count))
    matrix[1] = 0  # a class without examples
    return matrix


def _csv_shares(text: str) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(io.StringIO(text)))
    counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return rows[0][1:], np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def test_confusion_figure_plots_the_row_shares_of_the_csv(tmp_path):
    matrix = _confusion(10)
    names = [f"digit {i}" for i in range(10)]
    figure = figures.confusion_figure(matrix, names, "center_ckpt-1")
    header, shares = _csv_shares(metrics.confusion_csv(matrix, names))
    plotted = figure.axes[0].images[0]
    np.testing.assert_allclose(plotted.get_array(), shares, rtol=0, atol=1e-15)
    np.testing.assert_allclose(plotted.get_array().sum(axis=1), [1, 0] + [1] * 8)
    assert plotted.get_cmap().name == figures.SHARE_COLORMAP
    assert plotted.get_clim() == (0.0, 1.0)
    # Every non-zero cell carries its count; every class is named, rows with their totals.
    cells = sorted(
        (round(t.get_position()[1]), round(t.get_position()[0]), int(t.get_text()))
        for t in figure.axes[0].texts
    )
    assert cells == [(r, c, int(v)) for (r, c), v in np.ndenumerate(matrix) if v]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == header
    assert figure.axes[0].get_yticklabels()[1].get_text() == "digit 1 (0)"
    assert figure.axes[0].get_yticklabels()[0].get_text() == f"digit 0 ({matrix[0].sum()})"

    picture = figures.pixels(figure)
    assert picture.shape == (figures.CONFUSION_SIZE[1], figures.CONFUSION_SIZE[0], 3)
    assert picture.std() > 20  # not blank
    path = figures.save_png(picture, str(tmp_path / "sub" / "confusion.png"))
    with Image.open(path) as written:
        assert written.size == figures.CONFUSION_SIZE
        assert np.array_equal(np.asarray(written), picture)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["confusion.png"]  # no temp left


def test_many_classes_drop_cell_numbers_and_thin_the_names():
    readable = figures.confusion_figure(
        _confusion(figures.READABLE_CLASSES), [str(i) for i in range(figures.READABLE_CLASSES)]
    )
    assert len(readable.axes[0].get_xticks()) == figures.READABLE_CLASSES
    assert len(readable.axes[0].texts) > figures.READABLE_CLASSES
    count = 100
    figure = figures.confusion_figure(_confusion(count), [f"n{i:04d}" for i in range(count)])
    axis = figure.axes[0]
    assert len(axis.texts) == 0
    step = math.ceil(count / figures.READABLE_CLASSES)
    assert list(axis.get_xticks()) == list(range(0, count, step))
    assert axis.get_xticklabels()[1].get_text() == f"n{step:04d}"
    assert f"one class in {step} named" in figure.get_suptitle()
    assert figures.pixels(figure).shape[:2] == figures.CONFUSION_SIZE[::-1]


def test_per_class_accuracy_bars():
    matrix = _confusion(10)
    accuracies = metrics.per_class_accuracy(matrix)
    figure = figures.per_class_accuracy_figure(accuracies, [str(i) for i in range(10)])
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    expected = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    np.testing.assert_allclose(heights, expected)  # class 1 (no examples): no bar
    assert figure.axes[0].get_xticklabels()[1].get_text() == "1 (n/a)"
    mean_line = figure.axes[0].lines[0].get_ydata()
    assert mean_line[0] == pytest.approx(np.nanmean(accuracies))
    picture = figures.pixels(figure)
    assert picture.shape == (figures.BARS_SIZE[1], figures.BARS_SIZE[0], 3)
    assert picture.std() > 20


def _heat(size: int) -> np.ndarray:
    rows, columns = np.mgrid[0:size, 0:size]
    heat = np.exp(-((rows - 20) ** 2 + (columns - 40) ** 2) / 150.0)
    return (heat - heat.min()) / (heat.max() - heat.min())


def test_cam_figure_has_image_heat_and_overlay_side_by_side():
    size = 64
    image = np.zeros((size, size, 3), np.uint8)
    image[10:50, 20:40] = (200, 180, 30)
    heat = _heat(size)
    top = figures.top_classes(np.array([0.1, 0.6, 0.25, 0.05]), ["ant", "bee", "cat", "dog"])
    assert top == [("bee", 0.6), ("cat", 0.25), ("ant", 0.1)]
    assert figures.probability_text(2.34e-5) == "2.3e-05" and figures.probability_text(0) == "0.000"
    figure = figures.cam_figure(image, heat, top, title="predicted bee, true cat", method="cam")
    panels = [axis for axis in figure.axes if axis.images and axis.get_label() != "<colorbar>"]
    assert len(panels) == 3
    image_panel, heat_panel, overlay_panel = (axis.images[0] for axis in panels)
    assert np.array_equal(image_panel.get_array(), image)
    np.testing.assert_array_equal(heat_panel.get_array(), heat)
    assert heat_panel.get_cmap().name == figures.HEAT_COLORMAP
    assert heat_panel.get_clim() == (0.0, 1.0)
    assert np.array_equal(overlay_panel.get_array(), figures.overlay_pixels(image, heat))
    # Side by side, left to right, and the same height.
    boxes = [axis.get_position() for axis in panels]
    assert boxes[0].x1 < boxes[1].x0 and boxes[1].x1 < boxes[2].x0
    assert len({round(box.height, 6) for box in boxes}) == 1
    texts = " ".join(t.get_text() for t in figure.texts)
    assert "predicted bee, true cat" in texts and "1. bee 0.600" in texts
    assert "3. ant 0.100" in texts and "dog" not in texts

    picture = figures.pixels(figure)
    assert picture.shape == (figures.CAM_SIZE[1], figures.CAM_SIZE[0], 3)
    assert picture.shape[1] > 2.5 * picture.shape[0]  # three panels wide
    # The drawn heat panel runs through the colour map: its darkest and brightest ends
    # (heat 0 and 1) and its middle are all on the screen.
    box = heat_panel.axes.get_window_extent()
    height = picture.shape[0]
    drawn = (
        picture[
            int(height - box.y1) + 2 : int(height - box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2
        ]
        .reshape(-1, 3)
        .astype(np.float64)
    )
    ramp = colormaps[figures.HEAT_COLORMAP]
    for value in (0.0, 0.5, 1.0):
        target = 255.0 * np.array(ramp(value)[:3])
        assert np.abs(drawn - target).sum(axis=1).min() < 12, value
    assert picture.std() > 20


def test_overlay_keeps_the_image_and_shows_the_heat():
    image = np.full((8, 8, 3), 128, np.uint8)
    heat = np.linspace(0, 1, 64).reshape(8, 8)
    blended = figures.overlay_pixels(image, heat).astype(int)
    ramp = colormaps[figures.HEAT_COLORMAP]
    grey = 128 / 255
    for value, pixel in ((0.0, blended[0, 0]), (1.0, blended[-1, -1])):
        expected = (1 - figures.HEAT_OPACITY) * grey + figures.HEAT_OPACITY * np.array(
            ramp(value)[:3]
        )
        np.testing.assert_allclose(pixel, 255 * expected, atol=1)
    assert blended[-1, -1].sum() > blended[0, 0].sum() + 200  # hot is much brighter
