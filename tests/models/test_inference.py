"""The inference form (models/inference.py): same outputs, swish written out, and the fusion
it exists for, read from the graph TensorFlow's optimizer (Grappler) produces."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import op_types, randomize
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

from official.models import batch_norm, graph, inference, registry


def _tiny_efficientnet() -> keras.Model:
    keras.utils.set_random_seed(3)
    model = registry.get("efficientnet_b0").build(
        num_classes=10, image_size=64, width_multiplier=0.25
    )
    randomize(model)
    return model


def _silu_layers(model) -> list[str]:
    return [
        call.layer.name
        for call in graph.calls(model)
        if isinstance(call.layer, keras.layers.Activation)
        and call.layer.activation is keras.activations.silu
    ]


def optimized_op_counts(model: keras.Model, image_size: int) -> collections.Counter:
    """Op types (with their fused ops) of `model`'s inference graph after Grappler, placed on
    the CPU as a serving process runs it."""
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, image_size, image_size, 3), tf.float32)
    )
    meta_graph = tf.compat.v1.train.export_meta_graph(
        graph_def=function.graph.as_graph_def(add_shapes=True), graph=function.graph
    )
    for node in meta_graph.graph_def.node:
        # The remapper fuses only ops placed on a CPU.
        node.device = "/job:localhost/replica:0/task:0/device:CPU:0"
    meta_graph.collection_def["train_op"].node_list.value.extend(
        [tensor.name.split(":")[0] for tensor in function.outputs]
    )
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
    counts: collections.Counter = collections.Counter()
    for node in optimized.node:
        fused = node.attr.get("fused_ops")
        suffix = "[" + ",".join(op.decode() for op in fused.list.s) + "]" if fused else ""
        counts[node.op + suffix] += 1
    return counts


def test_inference_form_outputs_names_and_sharing():
    model = _tiny_efficientnet()
    silu = _silu_layers(model)
    assert len(silu) == 49  # stem, 16 blocks × (expand or depthwise, SE reduction), head
    form = inference.inference_form(model)
    # 16 squeeze-excite blocks: two products each and the swish between them.
    assert (form.plain_swish, form.grouped_depthwise, form.vector_products) == (49, 16, 48)
    assert form.scaled_input == 1
    assert (len(form.folded), len(form.unfolded)) == (49, 0)
    assert _silu_layers(form.model) == []
    layers = {layer.name: layer for layer in form.model.layers}
    for name in silu:
        vector = name.endswith("_se_relu")
        assert layers[name].activation is (inference.vector_swish if vector else inference.swish)
    for name in ("block2a_se_reduce", "block2a_se_expand"):
        assert type(layers[name]) is inference.VectorConv2D
    # Layers neither folded nor rewritten are the model's own (same variables).
    assert layers["block2a_se_excite"] is model.get_layer("block2a_se_excite")
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    tolerance = {"rtol": 1e-4, "atol": 1e-4 * np.abs(expected).max()}
    np.testing.assert_allclose(form.model(x, training=False).numpy(), expected, **tolerance)
    # Traced, as serving runs it: the optimizer's fused convolution+swish kernels.
    traced = tf.function(lambda images: form.model(images, training=False))
    np.testing.assert_allclose(traced(x).numpy(), expected, **tolerance)
    unfolded = inference.inference_form(model, fold_batch_norm=False)
    assert (unfolded.folded, unfolded.plain_swish, unfolded.grouped_depthwise) == ((), 49, 16)
    assert unfolded.vector_products == 48
    np.testing.assert_allclose(unfolded.model(x, training=False).numpy(), expected, rtol=1e-5)
    # The unfolded form's depthwise layers are new objects: the model's own stay as they were.
    assert type(model.get_layer("block2a_dw_conv")) is keras.layers.DepthwiseConv2D


def test_swish_fuses_into_the_convolution_before_it():
    model = _tiny_efficientnet()
    before = optimized_op_counts(batch_norm.fold(model).model, 64)
    depthwise = optimized_op_counts(
        inference.inference_form(model, skip=("grouped_depthwise", "vector_products")).model, 64
    )
    grouped = optimized_op_counts(
        inference.inference_form(model, skip=("vector_products",)).model, 64
    )
    after = optimized_op_counts(inference.inference_form(model).model, 64)
    # keras' silu (tf.nn.silu, custom gradient) stays a standalone op after every convolution.
    assert before["_MklSwish"] == 49
    assert before["_FusedConv2D[BiasAdd,_MklSwish]"] == 0
    # Written out: a post-op of the 33 convolutions it follows (stem, 15 expansions, 16 SE
    # reductions, head); standalone after the 16 depthwise convolutions, whose fused kernel
    # takes the bias only...
    assert depthwise["_FusedConv2D[BiasAdd,_MklSwish]"] == 33
    assert depthwise["_MklSwish"] == 16
    assert depthwise["_FusedDepthwiseConv2dNative[BiasAdd]"] == 16 + 1  # and the input scale
    # ...and a post-op of all 49 once those are grouped convolutions...
    assert grouped["_FusedConv2D[BiasAdd,_MklSwish]"] == 49
    assert grouped["_MklSwish"] == 0
    assert _depthwise_ops(grouped) == {"_FusedDepthwiseConv2dNative[BiasAdd]": 1}  # input
    # ...until the squeeze-excite products on pooled vectors become matrix products (32, and
    # the classifier), with their swish as four element-wise ops (exp(−x) one composed op).
    assert after["_FusedConv2D[BiasAdd,_MklSwish]"] == 33
    assert after["_FusedMatMul[BiasAdd]"] == 32 + 1
    assert (after["_UnaryOpsComposition"], after["AddV2"], after["RealDiv"]) == (16, 16, 16)
    assert after["_MklSwish"] == 0
    assert _depthwise_ops(after) == {"_FusedDepthwiseConv2dNative[BiasAdd]": 1}
    assert (after["Sub"], before["Sub"]) == (0, 1)  # the input normalization's


def _depthwise_ops(counts: collections.Counter) -> dict[str, int]:
    return {op: count for op, count in counts.items() if "Depthwise" in op}


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 3},
        {"kernel_size": 5, "strides": 2, "padding": "same", "use_bias": False},
        {"kernel_size": (3, 5), "padding": "valid", "activation": "relu6"},
        {"kernel_size": 3, "strides": 2, "depth_multiplier": 2},
    ],
)
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_grouped_depthwise_computes_the_depthwise_layer(options, policy):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((9, 10, 6))
    depthwise = keras.layers.DepthwiseConv2D(
        **options, bias_initializer="random_normal", dtype=policy
    )
    dilated = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same", dtype=policy)
    model = keras.Model(inputs, dilated(depthwise(inputs)))
    grouped, count = inference.grouped_depthwise(model)
    assert count == 1  # Dilated layers keep TensorFlow's depthwise op.
    layer = grouped.get_layer(depthwise.name)
    assert type(layer) is inference.GroupedDepthwiseConv2D
    assert grouped.get_layer(dilated.name) is dilated
    assert layer.dtype_policy.name == policy
    assert layer.get_config() == depthwise.get_config()
    for copied, source in zip(layer.weights, depthwise.weights, strict=True):
        assert copied is not source
        np.testing.assert_array_equal(copied.numpy(), source.numpy())
    x = np.random.default_rng(2).normal(size=(2, 9, 10, 6)).astype("float32")
    traced = tf.function(lambda images: grouped(images, training=False))
    expected = model(x, training=False).numpy()
    tolerance = 1e-5 if policy == "float32" else 1e-2
    np.testing.assert_allclose(
        traced(x).numpy(), expected, rtol=tolerance, atol=tolerance * np.abs(expected).max()
    )
    ops = op_types(traced.get_concrete_function(tf.TensorSpec(x.shape)).graph)
    # bfloat16 layers keep TensorFlow's depthwise op (measured as fast or faster).
    grouped_ops = 1 if policy == "float32" else 0
    assert (ops.count("Conv2D"), ops.count("DepthwiseConv2dNative")) == (
        grouped_ops,
        2 - grouped_ops,
    )
    assert inference.grouped_count(grouped) == grouped_ops


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_vector_products_compute_the_convolutions_and_swish(policy):
    keras.utils.set_random_seed(6)
    pooled, plane = keras.Input((1, 1, 6)), keras.Input((3, 3, 6))
    options = {"bias_initializer": "random_normal", "dtype": policy}
    reduce = keras.layers.Conv2D(4, 1, **options)
    swish = keras.layers.Activation(inference.swish, dtype=policy)
    expand = keras.layers.Conv2D(6, 1, activation="sigmoid", **options)
    shared = keras.layers.Conv2D(6, 1, **options)  # Called on a plane too: stays.
    on_plane = keras.layers.Conv2D(5, 1, **options)
    plane_swish = keras.layers.Activation(inference.swish, dtype=policy)
    vector = expand(swish(reduce(pooled)))
    outputs = [vector, shared(vector), shared(plane), plane_swish(on_plane(plane))]
    model = keras.Model([pooled, plane], outputs)
    rewritten, count = inference.vector_products(model)
    assert count == 3
    assert [type(rewritten.get_layer(layer.name)) for layer in (reduce, expand)] == [
        inference.VectorConv2D
    ] * 2
    assert rewritten.get_layer(swish.name).activation is inference.vector_swish
    for layer in (shared, on_plane, plane_swish):
        assert rewritten.get_layer(layer.name) is layer
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(2, 1, 1, 6)) * 8, rng.normal(size=(2, 3, 3, 6))]
    x = [v.astype("float32") for v in x]
    traced = tf.function(lambda a, b: rewritten([a, b], training=False))
    tolerance = 1e-6 if policy == "float32" else 1e-2
    for got, expected in zip(traced(*x), model(x, training=False), strict=True):
        expected = expected.numpy()
        np.testing.assert_allclose(got.numpy(), expected, rtol=tolerance, atol=tolerance)
    ops = op_types(traced.get_concrete_function(*[tf.TensorSpec(v.shape) for v in x]).graph)
    assert (ops.count("MatMul"), ops.count("Conv2D")) == (2, 3)  # `shared` twice, `on_plane`


def test_scaled_input_computes_the_normalization():
    mean, variance = [123.7, 116.3, 103.5], [58.4**2, 57.1**2, 0.0]  # ε guards the zero.
    inputs = keras.Input((5, 6, 3))
    normalization = keras.layers.Normalization(mean=mean, variance=variance, dtype="float32")
    inverted = keras.layers.Normalization(mean=mean, variance=variance, invert=True)
    flat = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 9.0, 1.0])
    both = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 9.0, 1.0])
    x = normalization(inputs)
    outputs = [keras.layers.Conv2D(2, 3, dtype="mixed_bfloat16")(x), inverted(x), both(x)]
    vector = keras.Input((3,))
    model = keras.Model([inputs, vector], [*outputs, flat(vector), both(vector)])
    rewritten, count = inference.scaled_input(model)
    assert count == 1
    layer = rewritten.get_layer(normalization.name)
    assert type(layer) is inference.ChannelScale and layer.compute_dtype == "float32"
    assert rewritten.get_layer(inverted.name) is inverted
    assert rewritten.get_layer(flat.name) is flat
    assert rewritten.get_layer(both.name) is both  # Also called on vectors.
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 255, (2, 5, 6, 3)).astype("float32")
    vectors = rng.normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(
        layer(images).numpy(), normalization(images).numpy(), rtol=1e-6, atol=1e-6
    )
    pixels = images.astype(np.uint8)  # Integer pixels, which Keras' layer takes too.
    np.testing.assert_allclose(
        layer(pixels).numpy(), normalization(pixels).numpy(), rtol=1e-6, atol=1e-6
    )
    traced = tf.function(lambda a, b: rewritten([a, b], training=False))
    for got, expected in zip(traced(images, vectors), model([images, vectors]), strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-2, atol=1e-2)
    specs = (tf.TensorSpec(images.shape), tf.TensorSpec(vectors.shape))
    ops = op_types(traced.get_concrete_function(*specs).graph)
    assert ops.count("DepthwiseConv2dNative") == 1
    assert (ops.count("RealDiv"), ops.count("Sub")) == (3, 3)  # `flat`'s and `both`'s
    with pytest.raises(ValueError, match="unknown rewrites"):
        inference.inference_form(model, skip=("scaled_inputs",))


def test_vector_swish_is_swish_at_the_extremes():
    x = np.array([-1e4, -100.0, -20.0, -1.0, 0.0, 1e-3, 3.0, 100.0, 1e4], np.float32)
    with np.errstate(over="ignore"):  # e^10000 is inf in float64 too: x / inf = −0.
        expected = x / (1 + np.exp(-x.astype(np.float64)))
    for dtype in ("float32", "bfloat16"):
        got = inference.vector_swish(tf.constant(x, dtype)).numpy().astype(np.float64)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=2**-7, atol=1e-30)


def test_mobilenet_v2_depthwise_layers_become_grouped():
    keras.utils.set_random_seed(0)
    model = registry.get("mobilenet_v2").build(num_classes=10, image_size=64, width_multiplier=0.35)
    randomize(model)
    form = inference.inference_form(model)
    assert (form.plain_swish, form.grouped_depthwise, form.vector_products) == (0, 17, 0)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(
        form.model(x, training=False).numpy(), expected, atol=1e-4 * np.abs(expected).max()
    )
    counts = optimized_op_counts(form.model, 64)
    # The only depthwise op left is the input normalization's (1×1, scaled_input).
    assert _depthwise_ops(counts) == {"_FusedDepthwiseConv2dNative[BiasAdd]": 1}
    assert counts["_FusedConv2D[BiasAdd,Relu6]"] == 35  # stem, 17 depthwise, 16 expansions, head


def test_models_without_swish_and_bfloat16_policy():
    keras.utils.set_random_seed(0)
    model = registry.get("mobilenet_v2").build(num_classes=10, image_size=32, width_multiplier=0.35)
    same, count = inference.plain_swish(model)
    assert (same, count) == (model, 0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _tiny_efficientnet()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rewritten, _ = inference.plain_swish(model)
    policies = {layer.dtype_policy.name for layer in rewritten.layers if layer.name == "top_relu"}
    assert policies == {model.get_layer("top_relu").dtype_policy.name} == {"mixed_bfloat16"}


def test_swish_model_exports_to_saved_model_and_tflite(tmp_path):
    """The written-out swish (a registered Python function) survives both exports: the
    SavedModel's and the TFLite model's logits are the Keras model's."""
    from official.data import preprocess
    from official.serving import saved_model, tflite

    model = _tiny_efficientnet()
    form = inference.inference_form(model)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class_{i}\n" for i in range(10)))
    module = saved_model.ServingModule(
        form.model, labels_path=str(labels), geometry=preprocess.Geometry(64, 1.0, "bilinear")
    )
    saved_model.save_module(module, str(tmp_path / "export"))
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    tolerance = {"rtol": 1e-4, "atol": 1e-4 * np.abs(expected).max()}
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    outputs = loaded.signatures[saved_model.IMAGES_SIGNATURE](images=tf.constant(x))
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, **tolerance)
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite.convert(str(tmp_path / "export"), quantization="float"))
    classifier = tflite.TFLiteClassifier(str(path))
    np.testing.assert_allclose(
        np.concatenate([classifier.logits(x[i : i + 1]) for i in range(2)]), expected, **tolerance
    )
