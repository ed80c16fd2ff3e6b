"""`python -m official.predict`: top-5 per image; bad files are named and the rest still print."""

import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import bomb_png, digit_pixels, encode, run_module

LINE = re.compile(r"^  ([1-5])\. (\S+) +(\d\.\d{4})$")


def _blocks(stdout: str) -> dict:
    """{image path: [(class name, probability), ...]} from the printed report."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            blocks[current].append((match.group(2), float(match.group(3))))
        else:
            current = line
            blocks[current] = []
    return blocks


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    paths = {
        "seven": folder / "seven.png",
        "missing": folder / "missing.jpg",
        "text": folder / "notes.jpg",
        "three": folder / "three.jpg",
        "bomb": folder / "bomb.png",
    }
    paths["bomb"].write_bytes(bomb_png())
    paths["seven"].write_bytes(encode(digit_pixels(7, size=(36, 28)), "PNG"))
    paths["text"].write_text("not an image")
    paths["three"].write_bytes(encode(digit_pixels(3, size=(30, 40)), "JPEG"))
    return paths


@pytest.mark.parametrize("source", ["export_dir", "model_dir"])
def test_prints_top5_and_reports_bad_files_by_name(source, images, saved_model, trained_run):
    export_dir, _ = saved_model
    where = export_dir if source == "export_dir" else trained_run
    files = [str(images[k]) for k in ("seven", "missing", "text", "three", "bomb")]
    result = run_module("official.predict", f"--{source}={where}", *files)
    assert result.returncode == 1, result.stderr[-3000:]
    blocks = _blocks(result.stdout)
    assert list(blocks) == [str(images["seven"]), str(images["three"])]

    serve = tf.saved_model.load(str(export_dir / "1")).signatures["serving_default"]
    for path, printed in blocks.items():
        expected = serve(image_bytes=tf.constant([pathlib.Path(path).read_bytes()]))
        names = [n.decode() for n in expected["class_names"].numpy()[0]]
        assert [name for name, _ in printed] == names
        np.testing.assert_allclose(
            [p for _, p in printed], expected["probabilities"].numpy()[0], atol=5e-5
        )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {images['missing']}: No such file or directory",
        f"error: {images['text']}: not an image (not JPEG, PNG, GIF or BMP data)",
        f"error: {images['bomb']}: 400000000 pixels in its header, above the limit of "
        "89,478,485 (a decompression bomb?)",
    ]
    assert "3 of 5 images could not be classified" in result.stderr


def test_a_training_run_predicts_in_bfloat16_and_an_export_keeps_its_precision(
    images, saved_model, trained_run, tmp_path
):
    from official import export_lib

    export_dir, _ = saved_model
    path = str(images["three"])
    result = run_module(
        "official.predict", f"--model_dir={trained_run}", "--precision=mixed_bfloat16", path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [p for _, p in _blocks(result.stdout)[path]]
    assert "serving precision: mixed_bfloat16" in result.stderr  # The flag reached the model...
    # ...which gives a bfloat16 export's probabilities (the digits model is too sure of itself
    # for the printed 4 decimals to tell them from float32's).
    request = tf.constant([pathlib.Path(path).read_bytes()])
    bfloat16 = export_lib.export(
        str(trained_run), str(tmp_path / "bf16"), precision_name="mixed_bfloat16"
    )
    expected = tf.saved_model.load(bfloat16).signatures["serving_default"](image_bytes=request)
    np.testing.assert_allclose(printed, expected["probabilities"].numpy()[0], atol=5e-5)
    refused = run_module(
        "official.predict", f"--export_dir={export_dir}", "--precision=mixed_bfloat16", path
    )
    assert refused.returncode != 0
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith("--precision=mixed_bfloat16: an export keeps the precision it was written in")
    )
