"""`--config.runtime.precision=auto`: the choice per device, and the reason logged."""

import pytest
import tensorflow as tf

from official.training import precision


@pytest.fixture
def devices(monkeypatch):
    """Pretends the machine has the given accelerators and CPU flags."""

    def set_up(*, gpus=(), tpu=False, cpu_flags=()):
        physical = tf.config.list_physical_devices
        logical = tf.config.list_logical_devices
        monkeypatch.setattr(
            tf.config,
            "list_physical_devices",
            lambda kind=None: (
                [f"GPU:{i}" for i in range(len(gpus))] if kind == "GPU" else physical(kind)
            ),
        )
        monkeypatch.setattr(
            tf.config,
            "list_logical_devices",
            lambda kind=None: (
                ["TPU:0"] if kind == "TPU" and tpu else ([] if kind == "TPU" else logical(kind))
            ),
        )
        monkeypatch.setattr(
            tf.config.experimental,
            "get_device_details",
            lambda device: {"compute_capability": gpus[int(device.split(":")[1])]},
        )
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(cpu_flags))

    return set_up


@pytest.mark.parametrize(
    "machine, expected",
    [
        ({"tpu": True}, "mixed_bfloat16"),
        ({"gpus": [(8, 0)]}, "mixed_float16"),
        ({"gpus": [(7, 0)]}, "mixed_float16"),
        ({"gpus": [(6, 1)]}, "float32"),
        ({"cpu_flags": ["avx512f", "avx512_bf16"]}, "mixed_bfloat16"),
        ({"cpu_flags": ["amx_bf16"]}, "mixed_bfloat16"),
        ({"cpu_flags": ["avx2"]}, "float32"),
    ],
)
def test_auto_precision_per_device(devices, machine, expected):
    devices(**machine)
    policy, reason = precision.auto_precision()
    assert policy == expected
    assert reason  # Logged with the choice.


def test_set_policy_logs_the_auto_choice(devices, caplog):
    import keras
    from absl import logging

    devices(cpu_flags=["avx2"])
    logging.set_verbosity(logging.INFO)
    try:
        with caplog.at_level("INFO"):
            assert precision.set_policy("auto") == precision.Precision("float32")
        assert "precision auto → float32 (CPU without bfloat16 instructions)" in caplog.text
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_auto_on_a_bfloat16_cpu_defers_to_the_model(devices, caplog):
    import keras
    from absl import logging

    devices(cpu_flags=["avx512f", "avx512_bf16"])
    logging.set_verbosity(logging.INFO)
    try:
        with caplog.at_level("INFO"):
            resolved = precision.set_policy("auto")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert resolved == precision.Precision("mixed_bfloat16", tune=True)
    assert "timed on the model once it is built" in caplog.text
    with pytest.raises(ValueError, match="call tuned"):
        resolved.apply(None)


def _mobilenet_v2_bfloat16():
    import keras

    from official.models import registry

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        return registry.get("mobilenet_v2").build(
            num_classes=5, image_size=32, width_multiplier=0.25
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _dtypes(model) -> dict[str, str]:
    from official.models import graph

    return {call.layer.name: call.layer.dtype_policy.name for call in graph.calls(model)}


def test_auto_keeps_the_candidate_measured_fastest_on_the_model(caplog):
    """mobilenet_v2 where the model was timed fastest with float32 depthwise convolutions:
    those and their batch norms and ReLU6s in float32, the rest in bfloat16; the output
    float32; a training step runs."""
    import keras
    import numpy as np
    from absl import logging

    from official.models import graph

    model = _mobilenet_v2_bfloat16()
    asked = {}

    def measure(model_, policy, candidates, batch_size, training):
        asked.update(model=model_, policy=policy, candidates=candidates, batch=batch_size)
        asked["training"] = training
        # Seconds per pass: bfloat16 depthwise convolutions slow, as on some CPUs.
        return {"bfloat16": 0.012, "bfloat16, float32 depthwise": 0.010, "float32": 0.015}

    logging.set_verbosity(logging.INFO)
    with caplog.at_level("INFO"):
        resolved = precision.Precision("mixed_bfloat16", tune=True).tuned(
            model, batch_size=32, measure=measure
        )
        counts = resolved.apply(model)
    assert asked == {
        "model": model, "policy": "mixed_bfloat16", "candidates": precision.CANDIDATES,
        "batch": precision.TUNING_BATCH, "training": True,
    }  # fmt: skip
    assert resolved.chosen == "bfloat16, float32 depthwise"
    assert resolved.per_kind == {"depthwise": "float32"}
    assert resolved.name == "auto: bfloat16, float32 depthwise"
    assert resolved.tuned(model) is resolved  # Decided once (the EMA copy gets the same).
    assert (
        "precision auto → bfloat16, float32 depthwise; ms per training pass of 8 images: "
        "bfloat16 12, bfloat16, float32 depthwise 10, float32 15" in caplog.text
    )
    calls = list(graph.calls(model))
    dtypes = _dtypes(model)
    depthwise = [c.layer for c in calls if isinstance(c.layer, keras.layers.DepthwiseConv2D)]
    pointwise = [
        c.layer
        for c in calls
        if isinstance(c.layer, keras.layers.Conv2D) and tuple(c.layer.kernel_size) == (1, 1)
    ]
    assert len(depthwise) == 17 and len(pointwise) == 34  # 17 blocks (1 without expansion), head
    assert {layer.dtype_policy.name for layer in depthwise} == {"float32"}
    assert {layer.dtype_policy.name for layer in pointwise} == {"mixed_bfloat16"}
    assert dtypes["logits"] == "float32"  # Pinned by the model.
    # Each layer between two kernels follows the one that feeds it.
    for call in calls:
        if precision.layer_kind(call.layer) is None and call.layer.name != "logits":
            source = call.inputs[0]._keras_history[0]
            if source.name in dtypes:
                assert dtypes[call.layer.name] == dtypes[source.name], call.layer.name
    assert counts == {
        dtype: sum(d == dtype for d in dtypes.values()) for dtype in set(dtypes.values())
    }
    assert f"precision per layer: {counts['float32']} float32" in caplog.text
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model(images).dtype == "float32"
    # The compute dtypes really are mixed: a bfloat16 pointwise output, a float32 depthwise one.
    probe = keras.Model(model.input, [depthwise[-1].output, pointwise[-1].output])
    outputs = [keras.backend.standardize_dtype(t.dtype) for t in probe(images)]
    assert outputs == ["float32", "bfloat16"]
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    loss = model.train_on_batch(images, np.array([1, 3]))
    assert np.isfinite(loss)
    assert {v.dtype for v in model.trainable_variables} == {"float32"}


def test_candidates_keep_what_the_model_pinned_and_skip_absent_kinds():
    """Assigning every candidate in turn (as the timing does) and then the bfloat16 one gives
    the layers of a model built under bfloat16 back their first policies: the float32 the
    model pinned (output, input normalization) survives the all-float32 candidate."""
    from official.models import registry

    model = _mobilenet_v2_bfloat16()
    built = _dtypes(model)
    assert {"float32", "mixed_bfloat16"} == set(built.values())
    assert precision.candidates_for(model) == precision.CANDIDATES
    for per_kind in precision.CANDIDATES.values():
        precision.assign(model, "mixed_bfloat16", per_kind)
    assert set(_dtypes(model).values()) == {"float32"}
    precision.assign(model, "mixed_bfloat16", {})
    assert _dtypes(model) == built
    # No depthwise convolutions: "bfloat16, float32 depthwise" would repeat "bfloat16".
    resnet = registry.get("resnet18").build(num_classes=3, image_size=32)
    assert list(precision.candidates_for(resnet)) == ["bfloat16", "float32"]


def test_measuring_candidates_times_each_and_leaves_the_model_as_it_was():
    import numpy as np

    from official.models import batch_norm

    model = _mobilenet_v2_bfloat16()
    batch_norm.use_fused_kernel(model)
    before = [v.numpy() for v in model.non_trainable_variables]
    timings = precision.measure_candidates(
        model, "mixed_bfloat16", precision.CANDIDATES, batch_size=2, repeats=1
    )
    assert list(timings) == list(precision.CANDIDATES)
    assert all(0 < seconds < 60 for seconds in timings.values())
    # The training passes moved the batch-norm statistics; they are back.
    for value, variable in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    inference = precision.measure_candidates(
        model, "mixed_bfloat16", {"float32": {}}, batch_size=1, training=False, repeats=1
    )
    assert list(inference) == ["float32"] and inference["float32"] > 0


def test_a_model_not_built_under_the_policy_is_refused():
    from official.models import registry

    model = registry.get("resnet18").build(num_classes=3, image_size=32)  # float32
    with pytest.raises(ValueError, match="was built under mixed_bfloat16: nothing to assign"):
        precision.assign(model, "mixed_bfloat16", {})


def test_resumed_keeps_the_recorded_choice_only_for_a_timed_auto():
    auto = precision.Precision(precision.BFLOAT16, tune=True)
    resumed = auto.resumed("auto: bfloat16, float32 depthwise")
    assert (resumed.tune, resumed.chosen, resumed.per_kind) == (
        False,
        "bfloat16, float32 depthwise",
        {"depthwise": precision.FLOAT32},
    )
    assert resumed.name == "auto: bfloat16, float32 depthwise"
    # Nothing recorded, a plain policy, a candidate this version does not have, or a run
    # that does not time: no choice is taken over.
    for recorded in ("", "mixed_bfloat16", "auto: half"):
        assert auto.resumed(recorded) is auto
    plain = precision.Precision(precision.FLOAT32)
    assert plain.resumed("auto: float32") is plain
