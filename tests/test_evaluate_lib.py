"""`python -m official.evaluate` and evaluate_lib on a trained run: numbers, files,
reproducibility, errors."""

import csv
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, run_module
from PIL import Image

from official import evaluate_lib, runs
from official.data import preprocess, sources
from official.evaluation import figures, modes, report


def _tensorboard_tags(directory) -> dict:
    tags = {}
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags[value.tag] = (event.step, value)
    return tags


def test_center_reproduces_the_training_run_and_writes_everything(
    trained_run, trained_metrics, monkeypatch
):
    result = run_module("official.evaluate", f"--model_dir={trained_run}", "--cam_misclassified=3")
    assert result.returncode == 0, result.stderr[-3000:]
    step = trained_metrics["steps"]
    name = f"center_ckpt-{step}"
    out = trained_run / "evaluation"
    results = json.loads((out / f"{name}.json").read_text())
    # The same checkpoint, data and preprocessing as the run's own final evaluation.
    assert results["top1"] == pytest.approx(trained_metrics["top1"], abs=1e-12)
    assert results["top5"] == pytest.approx(trained_metrics["top5"], abs=1e-12)
    assert results["nll"] == pytest.approx(trained_metrics["loss"], rel=1e-5)
    assert results["examples"] == 359
    assert results["top1_error"] == pytest.approx(1 - results["top1"])
    assert 0 <= results["ece"] <= 1
    assert set(results["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert f"{name}: top-1 {results['top1']:.4f}" in result.stdout
    assert "evaluate center [" in result.stderr  # the progress bar

    rows = list(csv.reader((out / f"{name}_confusion.csv").open()))
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert matrix.sum() == 359 and np.trace(matrix) == round(results["top1"] * 359)
    # The same matrix as a picture: exactly the CSV's counts drawn, coloured by row share.
    png = out / f"{name}_confusion.png"
    assert results["confusion_png"] == str(png)
    with Image.open(png) as picture:
        assert picture.size == figures.CONFUSION_SIZE
        drawn = np.asarray(picture)
    names = [row[0] for row in rows[1:]]
    assert np.array_equal(drawn, figures.pixels(figures.confusion_figure(matrix, names, name)))
    assert drawn.std() > 20
    predictions = list(csv.DictReader((out / f"{name}_predictions.csv").open()))
    assert len(predictions) == 359 and predictions[0]["file"].startswith("datasets/digits/")
    hits = sum(p["class_1"] == p["label"] for p in predictions)
    assert hits == round(results["top1"] * 359)

    # The worst mistakes as CAM overlays, in PNG files and in TensorBoard.
    assert len(results["misclassified_cam"]) == 3
    for path in results["misclassified_cam"]:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.size == figures.CAM_SIZE
            assert np.asarray(picture).std() > 20
    tags = _tensorboard_tags(out)
    assert tags[f"{name}/top1"][0] == step
    # Image summaries: [width, height, PNG...] strings, one PNG per image.
    sizes = {
        "confusion_matrix": (figures.CONFUSION_SIZE, 1),
        "per_class_accuracy": (figures.BARS_SIZE, 1),
        "misclassified_cam": (figures.CAM_SIZE, 3),
    }
    for tag, (size, count) in sizes.items():
        strings = tags[f"{name}/{tag}"][1].tensor.string_val
        assert (int(strings[0]), int(strings[1])) == size, tag
        assert len(strings) == 2 + count and strings[2].startswith(b"\x89PNG"), tag

    # Re-evaluating the same checkpoint gives the same numbers (and files). In-process, from
    # the repository root like the command above (the run's data source is a relative path).
    files = {
        p: (out / p).read_bytes()
        for p in (f"{name}.json", f"{name}_predictions.csv", f"{name}_confusion.png")
    }
    monkeypatch.chdir(REPO)
    evaluate_lib.run(str(trained_run), evaluate_lib.Options(cam_misclassified=3))
    for path, content in files.items():
        assert (out / path).read_bytes() == content


def test_ensemble_of_two_checkpoints_averages_their_posteriors(trained_run, image_folder, tmp_path):
    checkpoints = sorted(
        (trained_run / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.stem[5:])
    )
    paths = [str(p.with_suffix("")) for p in checkpoints[-2:]]
    options = evaluate_lib.Options(
        mode="ensemble",
        ensemble=",".join(paths),
        source=f"folder:{image_folder[0]}",
        output_dir=str(tmp_path),
    )
    results = evaluate_lib.run(None, options)
    assert [m["checkpoint"] for m in results["settings"]["members"]] == paths

    source = sources.open_source(f"folder:{image_folder[0]}")
    members = []
    for path in paths:
        model, config, _, _ = runs.load_trained_model(str(trained_run), checkpoint=path)
        geometry = runs.geometry(config)
        probabilities = modes.probabilities_function(model, geometry.image_size)
        members.append(
            modes.center(probabilities, source, "validation", batch_size=128, geometry=geometry)
        )
    average = (members[0][0] + members[1][0]) / 2
    labels = members[0][1]
    assert results["top1"] == pytest.approx(np.mean(average.argmax(1) == labels))
    with open(results["predictions_csv"]) as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose(
        [float(r["probability_1"]) for r in rows], average.max(1), rtol=1e-6, atol=1e-7
    )


def test_dense_and_multi_crop_through_the_run_config(trained_run, image_folder, tmp_path):
    common = dict(source=f"folder:{image_folder[0]}", output_dir=str(tmp_path))
    dense = evaluate_lib.run(str(trained_run), evaluate_lib.Options(mode="dense", **common))
    assert dense["settings"]["scales"] == [32]  # S = 32 / crop_fraction 1.0
    assert dense["name"].startswith("dense_32_ckpt-")
    no_flip = evaluate_lib.run(
        str(trained_run), evaluate_lib.Options(mode="dense", flip=False, **common)
    )
    assert no_flip["name"].startswith("dense_32_noflip_ckpt-") and not no_flip["settings"]["flip"]
    ten = evaluate_lib.run(str(trained_run), evaluate_lib.Options(mode="multi_crop", **common))
    assert ten["settings"]["crops_per_image"] == 10 and ten["name"].startswith("multi_crop_ten_")
    for results in (dense, ten):
        assert results["examples"] == 6
        with open(results["predictions_csv"]) as f:
            assert [row["file"] for row in csv.DictReader(f)] == [
                str(p) for p in sorted(image_folder[1], key=lambda p: (p.parent.name, p.name))
            ]
    # Multi-scale around S = 32: S ± S/8, the smaller one raised to ResNet's 32 px minimum.
    multi = evaluate_lib.run(str(trained_run), evaluate_lib.Options(mode="multi_scale", **common))
    assert multi["settings"]["scales"] == [32, 36] and multi["examples"] == 6
    assert multi["name"].startswith("multi_scale_32-36_ckpt-")
    errors = [
        (dict(mode="multi_scale", scales=(0, 32, 64)), "--scales='0,32,64': test scale 0 is"),
        (dict(mode="dense", tflite="x.tflite"), "evaluated with --mode=center only"),
        (dict(mode="ensemble", ensemble=str(trained_run)), "at least two"),
        (dict(source="folder:/no/such/dir"), "folder:/no/such/dir: no such directory"),
    ]
    for options, message in errors:
        with pytest.raises(ValueError, match=re.escape(message)):
            evaluate_lib.run(str(trained_run), evaluate_lib.Options(**{**common, **options}))


def _capture_posteriors(monkeypatch) -> dict:
    """Keeps the (N, K) posteriors every evaluation hands to the report."""
    captured = {}
    write_results = report.write_results

    def capture(directory, results, probabilities, labels, *args, **kwargs):
        captured[results["name"]] = probabilities
        return write_results(directory, results, probabilities, labels, *args, **kwargs)

    monkeypatch.setattr(report, "write_results", capture)
    return captured


def test_dense_plus_multi_crop_is_the_mean_of_the_two_modes(
    trained_run, image_folder, tmp_path, monkeypatch
):
    """VGG's Table 5 last rows (arXiv 1409.1556 §4.3): dense and multi-crop (grid) posteriors
    at the same scales averaged; by default Q = S, 1.5 S, 2 S as the grid's."""
    geometry = preprocess.Geometry(32, 1.0, "bilinear")
    options = evaluate_lib.Options(mode="dense+multi_crop")
    assert evaluate_lib.default_scales(options, geometry, 32) == (32, 48, 64)
    captured = _capture_posteriors(monkeypatch)
    scales = (32, 40)
    options = evaluate_lib.Options(
        mode="dense+multi_crop",
        crops="grid",
        scales=scales,
        batch_size=100,  # One image's 100 crops per batch, as below: the same float32 sums.
        source=f"folder:{image_folder[0]}",
        output_dir=str(tmp_path),
    )
    results = evaluate_lib.run(str(trained_run), options)
    assert results["name"].startswith("dense+multi_crop_grid_32-40_ckpt-")
    assert results["settings"]["dense"] == {"scales": [32, 40], "flip": True}
    assert results["settings"]["multi_crop"]["crops_per_image"] == 100
    assert (tmp_path / f"{results['name']}.json").is_file() and results["examples"] == 6
    assert f"{results['name']}/top1" in _tensorboard_tags(tmp_path)

    model, config, _, _ = runs.load_trained_model(str(trained_run))
    geometry = runs.geometry(config)
    source = sources.open_source(f"folder:{image_folder[0]}")
    dense, labels = modes.dense_eval(model, source, "validation", geometry=geometry, scales=scales)
    grid, _ = modes.multi_crop(
        model, source, "validation", batch_size=100, geometry=geometry, kind="grid", scales=scales
    )
    assert not np.allclose(dense, grid)  # Two different evaluations...
    # ...whose mean is what the combined mode reports.
    np.testing.assert_allclose(captured[results["name"]], (dense + grid) / 2, rtol=1e-12, atol=0)
    top1 = np.mean(((dense + grid) / 2).argmax(1) == labels)
    assert results["top1"] == pytest.approx(top1)


def test_ensemble_result_names_say_the_members_modes():
    options = evaluate_lib.Options(mode="ensemble", crops="grid")
    assert evaluate_lib.result_name(options, None, (), ("center", "center")) == "ensemble"
    shared = ("dense+multi_crop", "dense+multi_crop")
    assert evaluate_lib.result_name(options, None, (), shared) == "ensemble_dense+multi_crop_grid"
    mixed = ("multi_crop", "multi_scale")
    assert (
        evaluate_lib.result_name(options, None, (), mixed) == "ensemble_multi_crop_grid_multi_scale"
    )


def test_ensemble_members_each_in_their_own_mode(trained_run, image_folder, tmp_path, monkeypatch):
    """One member dense, the other ten-crop: their posteriors averaged (arXiv 1409.1556 §4.4)."""
    captured = _capture_posteriors(monkeypatch)
    checkpoints = sorted(
        (trained_run / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.stem[5:])
    )
    paths = [str(p.with_suffix("")) for p in checkpoints[-2:]]
    common = dict(
        mode="ensemble",
        ensemble=",".join(paths),
        source=f"folder:{image_folder[0]}",
        output_dir=str(tmp_path),
    )
    options = evaluate_lib.Options(ensemble_modes=("dense", "multi_crop"), **common)
    results = evaluate_lib.run(None, options)
    assert results["name"] == "ensemble_dense_multi_crop_ten"
    members = results["settings"]["members"]
    assert [m["mode"] for m in members] == ["dense", "multi_crop"]
    assert members[0]["scales"] == [32] and members[1]["crops_per_image"] == 10

    source = sources.open_source(f"folder:{image_folder[0]}")
    first, config, _, _ = runs.load_trained_model(str(trained_run), checkpoint=paths[0])
    second, _, _, _ = runs.load_trained_model(str(trained_run), checkpoint=paths[1])
    geometry = runs.geometry(config)
    dense, _ = modes.dense_eval(first, source, "validation", geometry=geometry, scales=(32,))
    ten, _ = modes.multi_crop(
        second, source, "validation", batch_size=64, geometry=geometry, kind="ten"
    )
    np.testing.assert_allclose(
        captured["ensemble_dense_multi_crop_ten"], (dense + ten) / 2, rtol=1e-12, atol=0
    )

    errors = [
        (dict(ensemble_modes=("dense",) * 3), "one mode for all members or one per member (2)"),
        (dict(ensemble_modes=("ensemble",)), "--ensemble_modes='ensemble': choose one of"),
    ]
    for extra, message in errors:
        with pytest.raises(ValueError, match=re.escape(message)):
            evaluate_lib.run(None, evaluate_lib.Options(**{**common, **extra}))
    with pytest.raises(ValueError, match=re.escape("only with --mode=ensemble")):
        evaluate_lib.run(str(trained_run), evaluate_lib.Options(ensemble_modes=("dense",)))


@pytest.mark.parametrize(
    "image_size, crop_fraction, min_resolution, expected",
    [
        (224, 0.875, 32, (224, 256, 288)),  # VGG's S = 256 (arXiv 1409.1556 §4.2)...
        (384, 1.0, 32, (352, 384, 416)),  # ...and S = 384: S ± 32.
        (64, 1.0, 32, (56, 64, 72)),  # Smaller S: S ± S/8.
        (32, 1.0, 8, (28, 32, 36)),
        (32, 1.0, 32, (32, 36)),  # None below the model's minimum.
    ],
)
def test_default_multi_scale_scales_follow_the_training_scale(
    image_size, crop_fraction, min_resolution, expected
):
    geometry = preprocess.Geometry(image_size, crop_fraction, "bilinear")
    options = evaluate_lib.Options(mode="multi_scale")
    assert evaluate_lib.default_scales(options, geometry, min_resolution) == expected


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--scales=32,big"], "--scales=32,big: expected integers"),
        pytest.param(
            ["--mode=bogus"], "flag --mode=bogus: value should be one of", marks=pytest.mark.slow
        ),
    ],
)
def test_user_errors_are_one_line(trained_run, args, expected):
    result = run_module("official.evaluate", f"--model_dir={trained_run}", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
