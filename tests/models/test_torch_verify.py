"""The PyTorch ports against the real torchvision / timm architectures
(official/torch_verify.py).

Without torch: `data/torch_manifests.json` holds each reference's state-dict modules and
shapes in file order, as `tools/verify_torch_port.py --write_manifest` wrote them from the real
torchvision / timm models; a random state dict of that structure must port into its registry
model with every tensor used and every weight of the model filled, with the layout's BN
epsilon equal to the source's. With a torch Python in CNN_REPRO_TORCH_PYTHON, the slow test runs
the real networks and compares the logits.
"""

import json
import os

import keras
import numpy as np
import pytest

from official import torch_verify
from official.models import registry, torch_port
from official.models.torch_port import TorchPortError
from official.training import transfer

MANIFEST_PATH = os.path.join(os.path.dirname(__file__), "data", "torch_manifests.json")
with open(MANIFEST_PATH) as _f:
    MANIFEST = json.load(_f)


def _params(keys):
    for key in keys:
        slow = torch_verify.BY_KEY[key].slow
        yield pytest.param(key, marks=pytest.mark.slow) if slow else key


def _build_for(entry, weights, **overrides):
    spec = registry.get(entry["model"])
    layout = entry["layout"] or torch_port.detect_layout(weights)
    arithmetic = torch_port.arithmetic(layout, spec.family, spec.name)
    # Small inputs; VGG's flattened fully-connected weights need the reference grid.
    size = spec.default_resolution if spec.fixed_size else max(32, spec.min_resolution)
    model = spec.build(
        image_size=size,
        num_classes=transfer.classifier_outputs(weights),
        **{**arithmetic, **overrides},
    )
    return spec, layout, arithmetic, model


def test_manifest_covers_every_reference():
    assert set(MANIFEST) == set(torch_verify.BY_KEY)
    for key, entry in MANIFEST.items():
        assert entry["model"] == torch_verify.BY_KEY[key].model


@pytest.mark.parametrize("key", _params(MANIFEST))
def test_real_architectures_state_dict_fills_its_registry_model(key):
    entry = MANIFEST[key]
    weights = torch_verify.synthetic_state_dict(entry)
    spec, layout, arithmetic, model = _build_for(entry, weights)
    # The layout builds the model with the BN epsilon the source network uses (if it has BN).
    assert set(entry["bn_epsilons"]) <= {arithmetic["norm_epsilon"]}
    # Every weight but the input normalization (the builder's, or the layout's) starts as NaN.
    sentinel = [
        w
        for layer in model.layers
        if not isinstance(layer, keras.layers.Normalization)
        for w in layer.weights
    ]
    for weight in sentinel:
        weight.assign(np.full(weight.shape, np.nan, weight.dtype))
    # Raises when a module is left over or a layer gets nothing.
    torch_port.port_state_dict(weights, model, layout=layout, family=spec.family)
    unfilled = [w.path for w in sentinel if not np.all(np.isfinite(w.numpy()))]
    assert not unfilled
    images = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:]))
    assert np.all(np.isfinite(np.asarray(model(images.astype("float32"), training=False))))
    keras.backend.clear_session()


def test_torchvision_googlenet_needs_its_own_row():
    # torchvision's "5x5" branch is a 3x3 convolution: the paper's GoogLeNet with BN refuses it,
    # naming the first layer that does not fit.
    entry = {**MANIFEST["torchvision.googlenet"], "model": "inception_v1_bn"}
    weights = torch_verify.synthetic_state_dict(entry)
    spec, layout, _, model = _build_for(entry, weights)
    with pytest.raises(TorchPortError, match=r"inception3a.branch3.1.conv .*inception_3a_5x5"):
        torch_port.port_state_dict(weights, model, layout=layout, family=spec.family)
    # torchvision's pretrained GoogLeNet and Inception-v3 transform their input to [-1, 1].
    for name in ("inception_v1_torchvision", "inception_v3_torchvision"):
        spec = registry.get(name)
        layout = torch_port.LAYOUTS["torchvision"]
        assert layout.normalization_for(name, spec.family) is None
        assert spec.mean == spec.std == (127.5,) * 3
    assert "padding" not in torch_port.arithmetic("torchvision", "inception", "inception_v1_bn")


@pytest.mark.slow
def test_torchvision_inception_v3_needs_the_bn_scale():
    entry = {**MANIFEST["torchvision.inception_v3"], "model": "inception_v3"}
    weights = torch_verify.synthetic_state_dict(entry)
    spec, layout, _, model = _build_for(entry, weights)
    with pytest.raises(TorchPortError, match=r"conv1a_bn has no scale .*Conv2d_1a_3x3.bn"):
        torch_port.port_state_dict(weights, model, layout=layout, family=spec.family)


def test_layout_tables_prefer_the_longest_name_then_the_family():
    torchvision = torch_port.LAYOUTS["torchvision"]
    assert torchvision.epsilon("mobilenet_v3_small", "mobilenet") == 1e-3
    assert torchvision.epsilon("mobilenet_v2", "mobilenet") == 1e-5
    assert torchvision.epsilon("efficientnet_b0", "efficientnet") == 1e-5
    assert torchvision.epsilon("efficientnet_b7", "efficientnet") == 1e-3
    assert torchvision.epsilon("inception_v1_torchvision", "inception") == 1e-3
    assert torch_port.arithmetic("timm_tf", "efficientnet", "efficientnet_lite0") == {
        "padding": "tf",
        "norm_epsilon": 1e-3,
    }


@pytest.mark.slow
def test_ports_reproduce_the_real_networks_logits(tmp_path):
    torch_python = os.environ.get("CNN_REPRO_TORCH_PYTHON")
    if not torch_python:
        pytest.skip("set CNN_REPRO_TORCH_PYTHON to a Python with torch, torchvision and timm")
    manifest = tmp_path / "manifest.json"
    lines = []
    results = torch_verify.verify(torch_python, manifest_path=str(manifest), log=lines.append)
    assert len(results) == len(torch_verify.REFERENCES)
    failed = [torch_verify.describe(r) for r in results if not r.ok]
    assert not failed
    # Our float32 logits are as close to the float64 source as torch's own float32 ones.
    for result in results:
        assert result.max_abs_diff <= 3 * result.torch_float32_diff + 1e-7 * result.logit_std
    assert lines[-1] == f"{len(results)} of {len(results)} ports reproduce their source's logits"
    # The committed manifest is what these torchvision / timm versions build.
    assert json.loads(manifest.read_text()) == MANIFEST


def test_tolerance_grows_with_torchs_own_float32_error():
    reference = torch_verify.REFERENCES[0]
    shallow = torch_verify.Result(reference, 2e-4, 1.0, torch_float32_diff=1e-5)
    assert shallow.tolerance == torch_verify.RELATIVE_TOLERANCE and shallow.ok
    # ResNet-152's numbers: ours 1.8e-3, torch's own float32 1.9e-3 of the logit std.
    deep = torch_verify.Result(reference, 1.8e-3, 1.0, torch_float32_diff=1.9e-3)
    assert deep.tolerance == pytest.approx(3 * 1.9e-3) and deep.ok
    wrong = torch_verify.Result(reference, 2e-2, 1.0, torch_float32_diff=1.9e-3)
    assert not wrong.ok
    refused = torch_verify.Result(reference, error="no port")
    assert refused.tolerance == torch_verify.RELATIVE_TOLERANCE and not refused.ok
