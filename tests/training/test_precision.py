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
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(cpu_flags))

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


# What a bfloat16 CPU measured (seconds per forward + backward): depthwise slower in bfloat16,
# pointwise, 3x3 and dense convolutions faster, as on the project machine when idle.
MEASURED = {
    "depthwise": {"float32": 0.010, "mixed_bfloat16": 0.014},
    "pointwise": {"float32": 0.010, "mixed_bfloat16": 0.006},
    "conv": {"float32": 0.040, "mixed_bfloat16": 0.022},
    "dense": {"float32": 0.004, "mixed_bfloat16": 0.003},
}


def test_auto_gives_each_layer_kind_its_measured_dtype(devices, caplog):
    """mobilenet_v2: depthwise convolutions and their batch norms and ReLU6s in float32,
    pointwise convolutions and theirs in bfloat16; the output float32; a training step runs."""
    import keras
    import numpy as np
    from absl import logging

    from official.models import graph, registry

    devices(cpu_flags=["avx512f", "avx512_bf16"])
    logging.set_verbosity(logging.INFO)
    try:
        with caplog.at_level("INFO"):
            resolved = precision.set_policy("auto", measure=lambda: MEASURED)
        assert resolved.policy == "mixed_bfloat16"
        assert resolved.per_kind == {
            "depthwise": "float32", "pointwise": "mixed_bfloat16",
            "conv": "mixed_bfloat16", "dense": "mixed_bfloat16",
        }  # fmt: skip
        assert "depthwise 10.0/14.0 → float32" in caplog.text
        model = registry.get("mobilenet_v2").build(
            num_classes=5, image_size=32, width_multiplier=0.25
        )
        with caplog.at_level("INFO"):
            counts = resolved.apply(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    calls = list(graph.calls(model))
    dtypes = {call.layer.name: call.layer.dtype_policy.name for call in calls}
    depthwise = [c.layer for c in calls if isinstance(c.layer, keras.layers.DepthwiseConv2D)]
    pointwise = [
        c.layer
        for c in calls
        if isinstance(c.layer, keras.layers.Conv2D) and tuple(c.layer.kernel_size) == (1, 1)
    ]
    assert len(depthwise) == 17 and len(pointwise) == 34  # 17 blocks (1 without expansion), head
    assert {layer.dtype_policy.name for layer in depthwise} == {"float32"}
    assert {layer.dtype_policy.name for layer in pointwise} == {"mixed_bfloat16"}
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
