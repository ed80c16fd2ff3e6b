"""The SavedModel export: layout, size, both loaders, parity with evaluation, bad bytes, warm-up."""

import csv
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import bomb_png, digit_pixels, encode, synthetic_config

from official import evaluate_lib, export_lib, runs
from official.models import batch_norm, inference
from official.serving import saved_model as serving

BAD_INPUTS = {
    "empty": (b"", "empty input"),
    "text": (b"hello, not an image at all", "not an image (not JPEG, PNG, GIF or BMP data)"),
}


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _good_jpeg() -> bytes:
    return encode(digit_pixels(3, size=(40, 48)), "JPEG")


@pytest.fixture(scope="module")
def version_dir(saved_model):
    export_dir, _ = saved_model
    return export_dir / "1"


def test_layout_size_and_metadata(saved_model, trained_run, trained_metrics):
    export_dir, result = saved_model
    assert f"exported:     {export_dir / '1'}" in result.stdout
    assert sorted(os.listdir(export_dir)) == ["1"]  # no temporary directory left behind
    version = export_dir / "1"
    assert oct(version.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    for path in ("saved_model.pb", "variables/variables.index", "assets/labels.txt"):
        assert (version / path).is_file(), path
    assert (version / "assets" / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    assert (version / serving.WARMUP_FILE).is_file()
    metadata = json.loads((version / "assets.extra" / "export.json").read_text())
    assert metadata["checkpoint"].endswith(f"ckpt-{trained_metrics['steps']}")
    assert (metadata["image_size"], metadata["crop_fraction"]) == (32, 1.0)
    assert metadata["precision"] == "float32"
    assert metadata["warmup_batch_sizes"] == [1, 3]

    # Each weight stored once: the variables take the parameters' bytes plus a small index
    # (Keras' own export stores every weight twice, ../shared/reference/capabilities.md §5a).
    # The export's model has each BN folded into the convolution before it.
    model, *_ = runs.load_trained_model(str(trained_run))
    folded = batch_norm.fold(model)
    assert metadata["batch_norm_folded"] == len(folded.folded) > 0
    assert metadata["batch_norm_unfolded"] == len(folded.unfolded)
    assert metadata["plain_swish_layers"] == inference.plain_swish(folded.model)[1]
    parameter_bytes = sum(v.numpy().nbytes for v in folded.model.variables)
    variable_bytes = sum(f.stat().st_size for f in (version / "variables").iterdir())
    assert parameter_bytes < variable_bytes < 1.1 * parameter_bytes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_saved_model_cli_lists_both_signatures(version_dir):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", str(version_dir), "--all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "signature_def['serving_default']" in out and "signature_def['predict_images']" in out
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING" in out
    assert "outputs['class_names'] tensor_info:\n        dtype: DT_STRING" in out
    assert (
        "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 32, 32, 3)"
        in out
    )


def test_serving_matches_center_evaluation_on_the_same_files(
    version_dir, trained_run, image_folder, tmp_path
):
    root, files = image_folder
    results = evaluate_lib.run(
        str(trained_run),
        evaluate_lib.Options(source=f"folder:{root}", output_dir=str(tmp_path)),
    )
    with open(results["predictions_csv"]) as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(files) == 6  # JPEG, PNG, GIF and BMP of various shapes
    expected_classes = np.array(
        [[int(rows[str(p)][f"class_{i}"]) for i in range(1, 6)] for p in files]
    )
    expected = np.array(
        [[float(rows[str(p)][f"probability_{i}"]) for i in range(1, 6)] for p in files]
    )
    images = [p.read_bytes() for p in files]

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    outputs = serve(image_bytes=tf.constant(images))
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected_classes)
    assert np.abs(outputs["probabilities"].numpy() - expected).max() <= 1e-5
    names = outputs["class_names"].numpy().astype(str)
    np.testing.assert_array_equal(names, expected_classes.astype(str))

    # The TF1 session loader: the C++ SavedModelBundle path TF Serving uses.
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        bundle = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir))
        signature = bundle.signature_def["serving_default"]
        fetches = {key: value.name for key, value in signature.outputs.items()}
        feed = {signature.inputs["image_bytes"].name: images}
        graph_outputs = session.run(fetches, feed)
    np.testing.assert_array_equal(graph_outputs["classes"], expected_classes)
    assert np.abs(graph_outputs["probabilities"] - expected).max() <= 1e-5


def test_bad_bytes_fail_with_a_reason_and_the_next_request_succeeds(version_dir):
    good = _good_jpeg()
    png = encode(digit_pixels(1), "PNG")
    bad = {
        **BAD_INPUTS,
        "cut jpeg": (_cut(good), "truncated JPEG (no end-of-image marker)"),
        "cut png": (_cut(png), "truncated PNG (no IEND chunk)"),
        "bomb": (
            bomb_png(),
            "400000000 pixels in its header, above the limit of 89,478,485 (a decompression bomb?)",
        ),
    }
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        bundle = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir))
        signature = bundle.signature_def["serving_default"]
        fetch = signature.outputs["classes"].name
        name = signature.inputs["image_bytes"].name
        reference = session.run(fetch, {name: [good]})
        for data, reason in bad.values():
            with pytest.raises(
                tf.errors.InvalidArgumentError, match=re.escape(f"image_bytes[1]: {reason}")
            ):
                session.run(fetch, {name: [good, data]})
            np.testing.assert_array_equal(session.run(fetch, {name: [good]}), reference)

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    for data, reason in bad.values():
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve(image_bytes=tf.constant([data]))
        assert serving.describe_error(error.value) == reason
        np.testing.assert_array_equal(serve(image_bytes=tf.constant([good]))["classes"], reference)


def test_warmup_requests_replay(version_dir):
    """A single JPEG and a single PNG, then the fixture's --warmup_batch_sizes=3 as
    WARMUP_REPEATS requests of 3 JPEGs; every request runs on the loaded model."""
    from tensorflow_serving.apis import prediction_log_pb2

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    records = list(tf.data.TFRecordDataset(str(version_dir / serving.WARMUP_FILE)))
    assert serving.WARMUP_REPEATS == 3
    assert len(records) == 2 + 3
    formats, sizes = [], []
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "resnet18"
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["image_bytes"])
        sizes.append(len(images))
        formats.append({image[:4] for image in images})
        outputs = serve(image_bytes=tf.constant(images))
        assert outputs["classes"].shape == (len(images), 5)
    assert sizes == [1, 1, 3, 3, 3]
    jpeg, png = {b"\xff\xd8\xff\xe0"}, {b"\x89PNG"}
    assert formats == [jpeg, png, jpeg, jpeg, jpeg]


@pytest.mark.parametrize(
    "sizes, expected",
    [
        ((0,), "--warmup_batch_sizes=0: expected whole numbers from 1 to 1024"),
        ((32, 1025), "--warmup_batch_sizes=32,1025: expected whole numbers from 1 to 1024"),
        ((2.5,), "--warmup_batch_sizes=2.5: expected whole numbers"),
        (tuple(range(2, 11)), "--warmup_batch_sizes=2,3,4,5,6,7,8,9,10: at most 8 sizes"),
    ],
)
def test_bad_warmup_batch_sizes_are_refused_before_anything_is_read(tmp_path, sizes, expected):
    export_dir = tmp_path / "out"
    with pytest.raises(serving.ExportError, match=re.escape(expected)):
        export_lib.export(str(tmp_path / "no-run"), str(export_dir), warmup_batch_sizes=sizes)
    assert not export_dir.exists()


def test_warmup_batch_sizes_are_saved_model_only(tmp_path):
    with pytest.raises(serving.ExportError, match="only --format=saved_model has warm-up"):
        export_lib.export(
            str(tmp_path / "no-run"),
            str(tmp_path / "out"),
            export_format="tflite",
            warmup_batch_sizes=(8,),
        )


def test_warmup_requests_repeat_each_extra_size_once_sorted():
    images = [b"jpeg", b"png"]
    requests = serving.warmup_requests(images, (4, 1, 2, 4))
    assert [len(r) for r in requests] == [1, 1] + [2] * 3 + [4] * 3
    assert requests[:2] == [[b"jpeg"], [b"png"]]
    assert all(set(r) == {b"jpeg"} for r in requests[2:])


def test_versions_are_numbered_and_failed_exports_leave_nothing(trained_run, tmp_path, monkeypatch):
    export_dir = tmp_path / "exports"
    (export_dir / "7").mkdir(parents=True)  # an older version
    (export_dir / "notes").mkdir()
    first = export_lib.export(str(trained_run), str(export_dir), top_k=3)
    assert first == str(export_dir / "8")
    serve = tf.saved_model.load(first).signatures["serving_default"]
    assert serve(image_bytes=tf.constant([_good_jpeg()]))["classes"].shape == (1, 3)
    with pytest.raises(serving.ExportError, match="--version=8: .* exists already"):
        export_lib.export(str(trained_run), str(export_dir), version=8)

    def interrupted(module, directory):  # Killed while writing the SavedModel.
        os.makedirs(os.path.join(directory, "variables"))
        open(os.path.join(directory, "saved_model.pb"), "wb").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(serving, "save_module", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_lib.export(str(trained_run), str(export_dir))
    assert sorted(os.listdir(export_dir)) == ["7", "8", "notes"]
    assert serving.resolve_saved_model(str(export_dir)) == first
    shutil.rmtree(first)
    with pytest.raises(serving.ExportError, match="no saved_model.pb"):
        serving.resolve_saved_model(str(export_dir))


def test_export_holds_the_ema_weights_when_the_run_kept_them(version_dir, trained_run):
    images = np.stack([digit_pixels(d, size=(32, 32)) for d in range(4)]).astype(np.float32)
    exported = tf.saved_model.load(str(version_dir)).signatures["predict_images"]
    logits = exported(images=tf.constant(images))["logits"].numpy()
    average, *_ = runs.load_trained_model(str(trained_run), ema=True)
    raw, *_ = runs.load_trained_model(str(trained_run), ema=False)
    # Folded BN (the export) against the unfolded model: float rounding, which scales with
    # the activations, so relative to the largest logit (a logit of 1.9 among logits up to 25
    # once differed by 1.5e-5: the trained weights vary from run to run).
    expected = average(images, training=False).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1.5e-6, atol=2e-6 * np.abs(expected).max())
    assert np.abs(logits - raw(images, training=False).numpy()).max() > 1e-3


def _ops(export: str, op_type: str) -> int:
    """How many `op_type` nodes the export's functions hold (BN's inference form: one Rsqrt)."""
    graph = tf.saved_model.load(export).signatures["predict_images"].graph
    library = graph.as_graph_def().library.function
    return sum(node.op == op_type for function in library for node in function.node_def)


def test_folded_export_has_fewer_batch_norm_ops(version_dir, trained_run):
    # Outputs: test_export_holds_the_ema_weights_when_the_run_kept_them compares the export
    # with the unfolded Keras model.
    model, *_ = runs.load_trained_model(str(trained_run))
    folded = batch_norm.fold(model)
    unfolded = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, 32, 32, 3], tf.float32)
    )
    rsqrt = sum(op.type == "Rsqrt" for op in unfolded.graph.get_operations())
    assert rsqrt == len(folded.folded) + len(folded.unfolded)
    # The export holds the model twice (batch 1 and larger batches each have their branch).
    assert _ops(str(version_dir), "Rsqrt") == 2 * len(folded.unfolded) < rsqrt


def test_single_images_run_on_kernels_of_their_own(version_dir, trained_run):
    # With oneDNN's weight cache each kernel keeps the weight layout of its first batch size,
    # so batch-1 requests get their own branch (ServingModule); both give the same logits.
    model, *_ = runs.load_trained_model(str(trained_run))
    convolutions = sum(
        type(layer).__name__ in ("Conv2D", "DepthwiseConv2D") for layer in model.layers
    )
    assert convolutions > 0
    # And the input normalization, a 1×1 depthwise convolution in the export (scaled_input).
    assert _ops(str(version_dir), "Conv2D") + _ops(
        str(version_dir), "DepthwiseConv2dNative"
    ) == 2 * (convolutions + 1)
    images = np.stack([digit_pixels(d, size=(32, 32)) for d in range(3)]).astype(np.float32)
    exported = tf.saved_model.load(str(version_dir)).signatures["predict_images"]
    batch = exported(images=tf.constant(images))["logits"].numpy()
    singles = [exported(images=tf.constant(image[None]))["logits"].numpy()[0] for image in images]
    np.testing.assert_allclose(np.stack(singles), batch, rtol=1e-6, atol=1e-5)


def _bfloat16_convolutions(export: str) -> int:
    graph = tf.saved_model.load(export).signatures["predict_images"].graph
    library = graph.as_graph_def().library.function
    return sum(
        node.op == "Conv2D" and node.attr["T"].type == tf.bfloat16.as_datatype_enum
        for function in library
        for node in function.node_def
    )


def test_a_bfloat16_export_computes_in_bfloat16_with_float32_inputs_and_outputs(
    version_dir, trained_run, tmp_path, monkeypatch
):
    from official.training import precision

    path = export_lib.export(
        str(trained_run), str(tmp_path / "bf16"), precision_name="mixed_bfloat16"
    )
    metadata = json.loads(pathlib.Path(path, "assets.extra", "export.json").read_text())
    assert metadata["precision"] == "mixed_bfloat16"
    assert _bfloat16_convolutions(path) > 0 and _bfloat16_convolutions(str(version_dir)) == 0
    images = np.stack([digit_pixels(d, size=(32, 32)) for d in range(10)]).astype(np.float32)
    predict = tf.saved_model.load(path).signatures["predict_images"]
    assert predict.structured_input_signature[1]["images"].dtype == tf.float32
    outputs = predict(images=tf.constant(images))
    assert {outputs[k].dtype for k in ("logits", "probabilities")} == {tf.float32}
    reference = tf.saved_model.load(str(version_dir)).signatures["predict_images"]
    expected = reference(images=tf.constant(images))["logits"].numpy()
    logits = outputs["logits"].numpy()
    # bfloat16 keeps 8 significant bits: logits within a few percent of their spread, and
    # really rounded (not float32 under another name).
    error = np.abs(logits - expected).max()
    assert 0 < error < 0.05 * np.ptp(expected)
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve(image_bytes=tf.constant([_good_jpeg()]))["classes"].shape == (1, 5)

    # "auto" on a bfloat16 CPU times the folded model's inference pass per candidate.
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    timed = []

    def measure(model, policy, candidates, batch_size, training):
        timed.append((policy, list(candidates), batch_size, training, _has_batch_norm(model)))
        return {"bfloat16": 0.002, "float32": 0.003}

    monkeypatch.setattr(precision, "measure_candidates", measure)
    path = export_lib.export(str(trained_run), str(tmp_path / "auto"), precision_name="auto")
    assert timed == [("mixed_bfloat16", ["bfloat16", "float32"], 8, False, False)]
    metadata = json.loads(pathlib.Path(path, "assets.extra", "export.json").read_text())
    assert metadata["precision"] == "auto: bfloat16"
    assert _bfloat16_convolutions(path) == _bfloat16_convolutions(str(tmp_path / "bf16" / "1"))


def _has_batch_norm(model) -> bool:
    return any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision_name": "fp16"}, "--precision='fp16': choose one of float32, mixed_float16"),
        (
            {"precision_name": "mixed_bfloat16", "export_format": "tflite"},
            "--precision=mixed_bfloat16: only --format=saved_model computes in another precision",
        ),
    ],
)
def test_a_precision_export_cannot_write_is_refused_before_writing(
    trained_run, tmp_path, options, message
):
    with pytest.raises(serving.ExportError, match=re.escape(message)):
        export_lib.export(str(trained_run), str(tmp_path / "out"), **options)
    assert not (tmp_path / "out").exists()


def test_an_empty_request_gets_an_empty_answer(version_dir):
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    outputs = serve(image_bytes=tf.constant([], tf.string))
    assert outputs["classes"].shape == (0, 5) and outputs["class_names"].shape == (0, 5)


def test_a_decoder_failure_says_why_in_one_line(version_dir):
    png = bytearray(encode(digit_pixels(1), "PNG"))
    png[40] ^= 0xFF  # Damaged image data behind an intact signature and IEND.
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        serve(image_bytes=tf.constant([bytes(png)]))
    reason = serving.describe_error(error.value)
    assert reason.startswith("Invalid PNG") or "CRC" in reason, reason
    assert "Detected at node" not in reason and "\n" not in reason


@pytest.mark.parametrize("damage", ["saved_model.pb", "variables"])
def test_a_damaged_export_is_one_line(version_dir, tmp_path, damage):
    copy = tmp_path / "export" / "1"
    shutil.copytree(version_dir, copy)
    (target,) = (
        [copy / "saved_model.pb"] if damage == "saved_model.pb" else (copy / damage).glob("*.data*")
    )
    with open(target, "r+b") as f:
        f.truncate(100)
    with pytest.raises(
        serving.ExportError, match=f"--export_dir={copy}: not a loadable SavedModel"
    ):
        serving.load_classifier(str(tmp_path / "export"))


@pytest.fixture(scope="module")
def depthwise_run(tmp_path_factory):
    """A MobileNetV2 × 0.35 run of two steps on synthetic 32-px images: depthwise layers."""
    from official import train_lib

    model_dir = tmp_path_factory.mktemp("depthwise_run")
    config = synthetic_config("mobilenet_v2", num_classes=4, examples=32, image_size=32, epochs=1)
    config.model.width_multiplier = 0.35
    config.runtime.eval_every_epochs = 0
    train_lib.run(config, str(model_dir))
    return model_dir


def test_saved_model_runs_tensorflow_kernel_rewrites_and_tflite_does_not(depthwise_run, tmp_path):
    from official.serving import tflite

    model = runs.load_trained_model(str(depthwise_run)).model
    images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    expected = model(images, training=False).numpy()
    tolerance = {"atol": 1e-4 * np.abs(expected).max()}
    saved = export_lib.export(str(depthwise_run), str(tmp_path / "saved"))
    metadata = json.loads(pathlib.Path(saved, "assets.extra", "export.json").read_text())
    # At 32 px the last stage's maps are 1×1: its 1×1 convolutions are matrix products (block
    # 13's projection, the expansions and projections of blocks 14-16, the head).
    assert (metadata["grouped_depthwise_layers"], metadata["vector_product_layers"]) == (17, 8)
    assert metadata["scaled_input_layers"] == 1
    library = tf.saved_model.load(saved).signatures["predict_images"].graph.as_graph_def().library
    ops = [[node.op for node in function.node_def] for function in library.function]
    # No depthwise op left but the input normalization's 1×1 one.
    assert {f.count("DepthwiseConv2dNative") for f in ops if "Conv2D" in f} == {1}
    # Each traced copy of the model (the batch-1 branch and the other): stem, 17 depthwise,
    # 16 expansion and 17 projection convolutions and the head, 8 of them matrix products;
    # and the classifier.
    counts = {(f.count("Conv2D"), f.count("MatMul")) for f in ops} - {(0, 0)}
    assert counts == {(1 + 17 + 16 + 17 + 1 - 8, 8 + 1)}
    logits = tf.saved_model.load(saved).signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_allclose(logits["logits"].numpy(), expected, **tolerance)

    path = export_lib.export(str(depthwise_run), str(tmp_path / "lite"), export_format="tflite")
    metadata = json.loads(pathlib.Path(path).with_name("export.json").read_text())
    assert (metadata["grouped_depthwise_layers"], metadata["vector_product_layers"]) == (0, 0)
    assert metadata["scaled_input_layers"] == 0
    classifier = tflite.TFLiteClassifier(path)
    kinds = {op["op_name"] for op in classifier.interpreter._get_ops_details()}
    assert "DEPTHWISE_CONV_2D" in kinds
    np.testing.assert_allclose(
        np.concatenate([classifier.logits(images[i : i + 1]) for i in range(3)]),
        expected,
        **tolerance,
    )
