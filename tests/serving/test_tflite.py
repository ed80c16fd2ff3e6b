"""TFLite: float and int8 exports evaluated like the Keras model on the digits."""

import csv
import json

import numpy as np
import pytest
from helpers import REPO, run_module

from official import evaluate_lib, export_lib
from official.serving import tflite


@pytest.fixture(scope="module")
def keras_center(trained_run, tmp_path_factory):
    """Center evaluation of the trained run's checkpoint: the reference of both exports."""
    return evaluate_lib.run(
        str(trained_run),
        evaluate_lib.Options(
            source=f"folder:{REPO}/datasets/digits",
            output_dir=str(tmp_path_factory.mktemp("keras")),
        ),
    )


def _probabilities(results) -> np.ndarray:
    with open(results["predictions_csv"]) as f:
        return np.array([float(row["probability_1"]) for row in csv.DictReader(f)])


def test_float_tflite_matches_keras(trained_run, keras_center, tmp_path):
    path = export_lib.export(str(trained_run), str(tmp_path / "lite"), export_format="tflite")
    assert path == str(tmp_path / "lite" / "1" / "model.tflite")
    metadata = json.loads((tmp_path / "lite" / "1" / "export.json").read_text())
    assert metadata["quantization"] == "float" and metadata["input"] == "float32 0..255"
    assert (tmp_path / "lite" / "1" / "labels.txt").read_text().split() == list("0123456789")
    results = evaluate_lib.run(
        str(trained_run),
        evaluate_lib.Options(
            tflite=path, source=f"folder:{REPO}/datasets/digits", output_dir=str(tmp_path)
        ),
    )
    assert results["name"] == "tflite_model_v1" and results["examples"] == 359
    assert results["top1"] == pytest.approx(keras_center["top1"], abs=1 / 359)
    difference = np.abs(_probabilities(results) - _probabilities(keras_center)).max()
    assert difference < 1e-4


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_int8_export_from_the_command_line_and_its_accuracy(trained_run, keras_center, tmp_path):
    export_dir = tmp_path / "lite"
    result = run_module(
        "official.export",
        f"--model_dir={trained_run}",
        f"--export_dir={export_dir}",
        "--format=tflite",
        "--quantization=int8",
        "--calibration_examples=64",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path = export_dir / "1" / "model_int8.tflite"
    assert f"exported:     {path}" in result.stdout
    metadata = json.loads((export_dir / "1" / "export.json").read_text())
    assert metadata["calibration_examples"] == 64 and metadata["input"] == "uint8 0..255"
    classifier = tflite.TFLiteClassifier(str(path))
    assert classifier.input_dtype == np.uint8
    assert (classifier.input_scale, classifier.input_zero_point) == (1.0, 0)  # the pixels

    results = evaluate_lib.run(
        str(trained_run),
        evaluate_lib.Options(
            tflite=str(path), source=f"folder:{REPO}/datasets/digits", output_dir=str(tmp_path)
        ),
    )
    assert results["name"] == "tflite_model_int8_v1"
    # Quantization costs little on this model; the change is what the test records.
    print(f"int8 top-1 {results['top1']:.4f} vs Keras {keras_center['top1']:.4f}")
    assert results["top1"] >= keras_center["top1"] - 0.05
    assert results["settings"]["tflite"] == str(path)


def test_missing_or_invalid_tflite_file(tmp_path):
    with pytest.raises(tflite.TFLiteError, match="no such file"):
        tflite.TFLiteClassifier(str(tmp_path / "none.tflite"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 4)
    with pytest.raises(tflite.TFLiteError, match="junk.tflite"):
        tflite.TFLiteClassifier(str(junk))
