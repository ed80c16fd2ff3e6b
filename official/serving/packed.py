"""Packed weights of binary networks: 1 bit per binary weight plus α per output channel.

A binary layer (official/models/binary.py) computes with α · sign(W) and nothing else of its
latent kernel W, so its deployment form is sign(W) as bits (np.packbits of W >= 0, the sign
rule of binary.sign) and α (float32, one per output channel): 32x smaller than the float32
kernel (XNOR-Net arXiv 1603.05279 §1: "32x memory saving"). Every other variable (the real
first and last layers, shortcut projections, BN parameters and statistics) is kept as float32.

File format: an uncompressed NumPy .npz (no pickled objects), one entry per model variable
keyed by its Keras path (`conv2_block1_1_conv/kernel`); a binary kernel is two entries,
`<path>:sign_bits` (uint8) and `<path>:alpha` (float32); `__format__` names the format.
`save(..., packed=False)` writes the same container with float kernels, for comparisons.

Loading sets a binary kernel to W' = ±α: its α (binary.kernel_scale, which is exact for such a
kernel) and its signs are those that were saved, so the model computes exactly what the float
model computed. The latent magnitudes are gone: a packed file is for inference; training
resumes from checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile

import keras
import numpy as np

from official import atomic
from official.errors import UserError
from official.models import binary

FORMAT = "cnn-repro packed binary weights 1"
FILE_NAME = "weights.packed.npz"
_BITS = ":sign_bits"
_ALPHA = ":alpha"


class PackedWeightsError(UserError, ValueError):
    """A packed weights file that does not fit the model (or is not one); names the file."""


def _binary_kernels(model: keras.Model) -> dict[int, binary._Binarized]:
    return {id(layer.kernel): layer for layer in binary.binary_layers(model)}


def arrays(model: keras.Model, *, packed: bool = True) -> dict[str, np.ndarray]:
    """The file's entries for `model` (see the module docstring)."""
    kernels = _binary_kernels(model)
    entries = {"__format__": np.array(FORMAT if packed else FORMAT + " (float kernels)")}
    for variable in model.variables:
        value = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
        if packed and id(variable) in kernels:
            alpha = binary.kernel_scale(keras.ops.convert_to_tensor(variable.value))
            entries[variable.path + _BITS] = np.packbits(value.reshape(-1) >= 0)
            entries[variable.path + _ALPHA] = np.asarray(alpha, dtype=np.float32)
        else:
            entries[variable.path] = value
    return entries


def save(model: keras.Model, path: str, *, packed: bool = True) -> dict:
    """Writes the weights of `model` to `path` (an .npz, written whole or not at all).

    Returns:
      sizes(path, model).
    """
    with atomic.open_file(path, "wb") as f:
        np.savez(f, **arrays(model, packed=packed))
    return sizes(path, model)


def sizes(path: str, model: keras.Model) -> dict:
    """What `path` takes on disk: the whole file, and the entries that hold the binary layers'
    kernels of `model` (packed: bits and α; float: the float32 kernels), each entry's NumPy
    header included."""
    kernels = {layer.kernel.path for layer in binary.binary_layers(model)}
    with zipfile.ZipFile(path) as archive:
        binary_bytes = sum(
            member.compress_size
            for member in archive.infolist()
            if member.filename.removesuffix(".npy").rsplit(":", 1)[0] in kernels
        )
    return {"file_bytes": os.path.getsize(path), "binary_kernel_bytes": binary_bytes}


def load(model: keras.Model, path: str) -> None:
    """Sets the weights of `model` from a packed (or float) file written by `save`.

    Raises:
      PackedWeightsError: not such a file, or its entries do not fit the model.
    """
    kernels = _binary_kernels(model)
    try:
        data = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise PackedWeightsError(f"{path}: not a packed weights file ({e})") from None
    with data:
        if "__format__" not in data.files or not str(data["__format__"]).startswith(FORMAT):
            raise PackedWeightsError(f"{path}: not a packed weights file ({FORMAT})")
        for variable in model.variables:
            shape = tuple(variable.shape)
            if variable.path + _BITS in data.files and id(variable) in kernels:
                alpha = data[variable.path + _ALPHA]
                bits = np.unpackbits(data[variable.path + _BITS], count=math.prod(shape))
                if alpha.shape != shape[-1:]:
                    raise PackedWeightsError(
                        f"{path}: {variable.path} has {alpha.shape} scales, the model {shape}"
                    )
                signs = np.where(bits.reshape(shape) == 1, 1.0, -1.0).astype(np.float32)
                variable.assign(signs * alpha)
            elif variable.path in data.files:
                value = data[variable.path]
                if value.shape != shape:
                    raise PackedWeightsError(
                        f"{path}: {variable.path} has shape {value.shape}, the model {shape}"
                    )
                variable.assign(value)
            else:
                raise PackedWeightsError(f"{path}: no entry for the model's {variable.path}")


def export(
    model: keras.Model,
    *,
    export_dir: str,
    labels_path: str,
    metadata: dict,
    builder_arguments: dict,
    version: int | None = None,
) -> str:
    """Writes `export_dir/<version>/{weights.packed.npz, labels.txt, export.json}` (through a
    temporary directory renamed when complete) and returns the .npz path.

    export.json holds the registry name and `builder_arguments` that rebuild the model
    (`load_model`), the parameter split and the file's sizes.
    """
    from official.serving import saved_model

    split = binary.parameter_split(model)
    if not split.binary:
        raise PackedWeightsError(
            f"--format=packed: {metadata.get('model', model.name)} has no binary layers "
            "(the packed format is for binary networks, e.g. birealnet18)"
        )
    with saved_model.new_version(export_dir, version) as (temporary, final):
        measured = save(model, os.path.join(temporary, FILE_NAME))
        shutil.copyfile(labels_path, os.path.join(temporary, saved_model.LABELS_ASSET))
        saved_model.write_metadata(
            temporary,
            {
                **metadata,
                "format": "packed",
                "builder_arguments": builder_arguments,
                "parameters": {**split._asdict(), "total": split.total},
                **measured,
            },
        )
    return os.path.join(final, FILE_NAME)


def load_model(path: str) -> keras.Model:
    """Rebuilds the model of a packed export (its export.json) and loads the packed weights.

    Raises:
      PackedWeightsError: no export.json beside the file, or weights that do not fit.
    """
    from official.models import registry
    from official.serving import saved_model

    metadata_path = os.path.join(os.path.dirname(path), saved_model.METADATA_FILE)
    try:
        with open(metadata_path, encoding="utf-8") as f:
            metadata = json.load(f)
        name, arguments = metadata["model"], metadata["builder_arguments"]
    except (OSError, ValueError, KeyError) as e:
        raise PackedWeightsError(f"{metadata_path}: not a packed export's metadata ({e})") from None
    model = registry.get(name).build(**arguments)
    load(model, path)
    return model
