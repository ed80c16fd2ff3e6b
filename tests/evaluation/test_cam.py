"""Class activation maps peak where a planted pattern is; overlays and the CAM command."""

import numpy as np
import pytest
from helpers import bomb_png, digit_pixels, encode, run_module
from PIL import Image

from official.evaluation import cam, figures

keras = pytest.importorskip("keras")

SIZE = 64
# A red square planted in the top-right quarter of a grey image.
SQUARE = (slice(8, 24), slice(40, 56))


def _planted_image() -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), 100, np.uint8)
    image[SQUARE] = (230, 20, 20)
    return image


def _red_detector(head: str) -> keras.Model:
    """conv 3×3 (a red-minus-green-and-blue detector, ReLU) → conv 3×3 stride 2 (identity on
    the detector) → a classifier where class 0 sums the detector and class 1 its opposite.

    head="gap": global average pooling + dense (CAM applies); "flatten": flatten + dense
    (no GAP: Grad-CAM)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    detect = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="detect")
    x = detect(inputs)
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[1, 1, :, 0] = [1.0, -1.0, -1.0]  # red
    kernel[1, 1, :, 1] = [-1.0, 1.0, 1.0]  # not red
    detect.set_weights([kernel, np.zeros(2, np.float32)])
    down = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="down")
    x = down(x)
    identity = np.zeros((3, 3, 2, 2), np.float32)
    identity[1, 1] = np.eye(2)
    down.set_weights([identity, np.zeros(2, np.float32)])
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.1, name="top_dropout")(x)
        weights = np.eye(2, dtype=np.float32)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        weights = np.tile(np.eye(2, dtype=np.float32), (32 * 32, 1)) / (32 * 32)
    dense = keras.layers.Dense(2, name="predictions")
    outputs = dense(x)
    dense.set_weights([weights, np.zeros(2, np.float32)])
    return keras.Model(inputs, outputs, name=head)


@pytest.mark.parametrize("head, method", [("gap", "cam"), ("flatten", "grad_cam")])
def test_map_peaks_on_the_planted_pattern(head, method):
    mapper = cam.ActivationMapper(_red_detector(head))
    assert mapper.method == method
    image = _planted_image()
    maps = mapper(image[None].astype(np.float32), np.array([0]))
    assert maps.maps.shape == (1, SIZE, SIZE)  # upsampled from the 32×32 feature map
    assert maps.maps.min() == 0.0 and maps.maps.max() == pytest.approx(1.0)
    peak = np.unravel_index(maps.maps[0].argmax(), (SIZE, SIZE))
    assert SQUARE[0].start <= peak[0] < SQUARE[0].stop
    assert SQUARE[1].start <= peak[1] < SQUARE[1].stop
    inside = maps.maps[0][SQUARE].mean()
    outside = np.delete(maps.maps[0].ravel(), np.ravel_multi_index(np.mgrid[SQUARE], (64, 64)))
    assert inside > 0.5 > outside.mean()
    # The default class is the top one: the image is mostly grey, class 1 wins, and its map
    # is low on the square.
    default = mapper(image[None].astype(np.float32))
    assert default.classes.tolist() == [1]
    assert default.maps[0][SQUARE].mean() < default.maps[0].mean()


def test_cam_needs_global_average_pooling():
    with pytest.raises(ValueError, match="flatten: CAM needs global average pooling"):
        cam.ActivationMapper(_red_detector("flatten"), "cam")


def test_planted_pattern_is_the_hot_spot_of_the_drawn_overlay():
    """The figure's overlay panel, as drawn on screen, is brightest (its centre) on the planted
    square."""
    image = _planted_image()
    maps = cam.ActivationMapper(_red_detector("gap"))(image[None].astype(np.float32), np.array([0]))
    figure = figures.cam_figure(
        image, maps.maps[0], [("red", 0.9), ("grey", 0.1)], title="red", method=maps.method
    )
    picture = figures.pixels(figure)
    overlay_axis = [axis for axis in figure.axes if axis.get_title() == "overlay"][0]
    box = overlay_axis.get_window_extent()
    top, left = picture.shape[0] - box.y1, box.x0
    inset = 3  # inside the frame
    panel = picture[
        int(top) + inset : int(picture.shape[0] - box.y0) - inset,
        int(left) + inset : int(box.x1) - inset,
    ].sum(axis=-1)
    row, column = np.argwhere(panel >= 0.95 * panel.max()).mean(axis=0)  # the hot spot
    scale = box.height / SIZE
    row, column = (
        (row + int(top) + inset - top) / scale,
        (column + int(left) + inset - left) / scale,
    )
    assert SQUARE[0].start <= row < SQUARE[0].stop
    assert SQUARE[1].start <= column < SQUARE[1].stop


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_cam_command_writes_overlays_and_names_bad_files(trained_run, tmp_path):
    good = tmp_path / "four.png"
    good.write_bytes(encode(digit_pixels(4, size=(40, 40)), "PNG"))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:50])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    out = tmp_path / "cam"
    result = run_module(
        "official.cam",
        f"--model_dir={trained_run}",
        f"--output_dir={out}",
        str(good),
        str(cut),
        str(bomb),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"error: {cut}: truncated PNG (no IEND chunk)" in result.stderr
    assert f"error: {bomb}: 20000x20000 pixels, above the limit of 89,478,485" in result.stderr
    written = out / "four_cam.png"
    assert f"-> {written}" in result.stdout
    with Image.open(written) as picture:
        assert picture.size == figures.CAM_SIZE
        assert np.asarray(picture).std() > 20
