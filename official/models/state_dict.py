"""Reading PyTorch and safetensors checkpoints as NumPy arrays, without torch.

The model zoo's reference weights are published as PyTorch state dicts (torchvision, timm,
the papers' own repositories); this module owns turning such a file into a flat
{parameter name: numpy.ndarray} dict, so a port can copy them into a Keras model on a
machine without torch. It reads three formats, told apart by their first bytes:

  * "torch_zip", `torch.save`'s default since torch 1.6 (torch/serialization.py, `_save`): a
    zip archive holding `<folder>/data.pkl`, the pickled object whose tensors refer to their
    storages by persistent id ("storage", storage type, key, location, number of elements),
    each storage's raw little-endian bytes in `<folder>/data/<key>`, and `<folder>/byteorder`.
    The folder is "archive" or, in some torch versions, the file's stem.
  * "torch_legacy", torch < 1.6 or `_use_new_zipfile_serialization=False` (`_legacy_save`):
    one stream of pickles: a magic number, the protocol version 1001, a sys-info dict, the
    object (persistent ids ("storage", type, key, location, elements, view)), the sorted
    list of storage keys, then per key an int64 little-endian element count and the storage's
    little-endian bytes.
  * "safetensors" (github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
    header length, a JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}} with
    an optional "__metadata__" entry, then the byte buffer the offsets index.

A pickle can run any code when loaded, so the torch formats are unpickled by a restricted
unpickler: only the globals a state dict needs resolve (torch._utils' tensor and parameter
rebuilders, the typed storage classes, collections.OrderedDict, torch.Size), each mapped to
a NumPy stand-in here; any other global (os.system, builtins.eval, a pickled nn.Module) is
refused when the pickle names it, before it can be called. Tensors are rebuilt from their
storage, offset, shape and strides, so transposed or sliced views and storages shared by
several tensors read as torch would give them. bfloat16 is widened to float32 exactly (its
bits are the upper half of a float32's); other dtypes keep theirs.

`read` returns the model's weights; `read_checkpoint` the whole unpickled object (epoch,
optimizer state and all) with tensors as arrays; `state_dict` picks the weights out of such
an object.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from official.errors import UserError

FORMATS = ("torch_zip", "torch_legacy", "safetensors")

# Where `state_dict` looks, in order, when a checkpoint's top level is not itself a state
# dict: the keys training scripts save the model's weights under (torchvision and timm's
# "state_dict" / "model", the PyTorch tutorial's "model_state_dict", DataParallel-era
# "module" / "net"), then timm's EMA copy for files that hold only that.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "state_dict_ema")

# DataParallel / DistributedDataParallel prefix every parameter name with this.
_DATA_PARALLEL_PREFIX = "module."

# torch's legacy stream starts with these two pickled integers (torch/serialization.py).
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# safetensors refuses headers over 100 MB; so do we, before reading one.
_SAFETENSORS_MAX_HEADER = 100_000_000

# How each supported dtype's elements lie in a file (always little-endian); bfloat16 is read
# as its 16 raw bits and widened afterwards.
_STORED_DTYPES = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("u1"),
}
_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_SUPPORTED = ", ".join(_STORED_DTYPES)


class CheckpointError(UserError, ValueError):
    """A file that is not a readable checkpoint; the one-line message names the file and why."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle naming a global a state dict never needs; refused before anything ran."""


def read(path: str | os.PathLike, format: str | None = None, key: str | None = None) -> dict:
    """The model weights a checkpoint holds, as {name: numpy.ndarray} in the file's order.

    Args:
      path: a `torch.save` file (zip or legacy) or a .safetensors file.
      format: "torch_zip", "torch_legacy" or "safetensors"; None tells it from the first
        bytes.
      key: the top-level entry holding the weights (e.g. "state_dict_ema"); None picks it as
        `state_dict` describes.

    Raises:
      CheckpointError: not a checkpoint of a known format, a truncated or corrupt file, an
        unsupported dtype, no tensors; UnsafeCheckpointError: a pickle that would run code.
    """
    return state_dict(read_checkpoint(path, format), key=key, source=os.fspath(path))


def read_checkpoint(path: str | os.PathLike, format: str | None = None) -> Any:
    """The whole object a checkpoint holds (dicts, lists, numbers, strings), its tensors as
    numpy arrays: a safetensors file gives a flat dict, a torch file whatever was saved."""
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise CheckpointError(f"{path}: format={format!r} is not one of {', '.join(FORMATS)}")
    head = _head(path)  # Also the one check that the file can be opened.
    format = format or _format_of(path, head)
    if format == "safetensors":
        return _read_safetensors(path)
    if format == "torch_zip":
        return _read_torch_zip(path)
    return _read_torch_legacy(path)


def state_dict(checkpoint: Any, key: str | None = None, source: str = "checkpoint") -> dict:
    """The flat {name: array} weights of a model out of an unpickled checkpoint.

    A top level that maps names to arrays is the state dict itself. Otherwise (a training
    checkpoint such as {"state_dict": ..., "epoch": ..., "optimizer": ...}) it is the entry
    under `key`, or else under the first of STATE_DICT_KEYS ("state_dict",
    "model_state_dict", "model", "module", "net", "state_dict_ema") that maps names to
    arrays. Entries that are not arrays (ints, strings) are dropped; BN's num_batches_tracked
    is an array and stays. When every name starts with "module." (DataParallel), that prefix
    is removed.

    Args:
      checkpoint: what `read_checkpoint` returned.
      key: the top-level entry to take; None: as above.
      source: the file's name for error messages.
    """
    if key is not None:
        if not isinstance(checkpoint, Mapping) or key not in checkpoint:
            raise CheckpointError(
                f"{source}: has no entry {key!r} at its top level "
                f"(it has: {_describe_keys(checkpoint)})"
            )
        weights = _tensor_entries(checkpoint[key])
        if weights is None:
            raise CheckpointError(f"{source}: entry {key!r} maps no names to tensors")
    else:
        weights = _tensor_entries(checkpoint)
        if weights is None and isinstance(checkpoint, Mapping):
            for candidate in STATE_DICT_KEYS:
                weights = _tensor_entries(checkpoint.get(candidate))
                if weights is not None:
                    break
        if weights is None:
            if not _holds_arrays(checkpoint):
                raise CheckpointError(f"{source}: holds no tensors")
            raise CheckpointError(
                f"{source}: holds tensors but no state dict at its top level or under "
                f"{', '.join(STATE_DICT_KEYS)} (it has: {_describe_keys(checkpoint)}; "
                "name the entry with key=)"
            )
    if all(name.startswith(_DATA_PARALLEL_PREFIX) for name in weights):
        weights = {name[len(_DATA_PARALLEL_PREFIX) :]: array for name, array in weights.items()}
    return weights


def _tensor_entries(value: Any) -> dict | None:
    """A mapping's {name: array} entries when it is a flat state dict (string names, at
    least one array, no nested container of arrays); else None."""
    if not isinstance(value, Mapping):
        return None
    weights = {}
    for name, entry in value.items():
        if isinstance(entry, np.ndarray):
            if not isinstance(name, str):
                return None
            weights[name] = entry
        elif _holds_arrays(entry):
            return None
    return weights or None


def _holds_arrays(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, Mapping):
        return any(_holds_arrays(entry) for entry in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_arrays(entry) for entry in value)
    return False


def _describe_keys(value: Any) -> str:
    if not isinstance(value, Mapping):
        return f"a {type(value).__name__}, not a dict"
    if not value:
        return "nothing"
    names = ", ".join(_printable(str(name)) for name in list(value)[:12])
    return names + (", ..." if len(value) > 12 else "")


def _printable(text: str, limit: int = 120) -> str:
    """`text` on one line: a file's strings go into messages that must stay one line."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detect_format(path: str | os.PathLike) -> str:
    """The format of a checkpoint file, "torch_zip", "torch_legacy" or "safetensors", from
    its first bytes (zip "PK\\x03\\x04"; a pickle's "\\x80"; safetensors' 8-byte header
    length followed by "{")."""
    path = os.fspath(path)
    return _format_of(path, _head(path))


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(512)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def _format_of(path: str, head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "torch_zip"
    # A safetensors header is a JSON object right after its 8-byte length; a legacy torch
    # pickle's 9th byte is inside its magic number (0xf9), never "{".
    if head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"\x80"):
        return "torch_legacy"
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(
            f"{path}: is a Git LFS pointer, not the checkpoint (fetch it with git lfs pull)"
        )
    if head[257:262] == b"ustar":
        raise CheckpointError(
            f"{path}: is a tar checkpoint of torch < 0.4, which is not read; "
            "re-save it with a newer torch"
        )
    raise CheckpointError(
        f"{path}: not a checkpoint of a known format (a torch.save zip or pickle, or safetensors)"
    )


def _widen(stored: np.ndarray, dtype: str) -> np.ndarray:
    """The array of `dtype` whose elements are `stored` (`stored` itself where they agree)."""
    if dtype == "bfloat16":
        # bfloat16 is the upper 16 bits of the float32 with the same value.
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if dtype == "bool":
        return stored != 0
    return stored


# ---------------------------------------------------------------------------------------------
# safetensors


def _read_safetensors(path: str) -> dict:
    with open(path, "rb") as file:
        data = file.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({len(data)} bytes)")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > min(len(data) - 8, _SAFETENSORS_MAX_HEADER):
        raise CheckpointError(
            f"{path}: safetensors header length {header_length} goes past the end of the "
            f"file ({len(data)} bytes): truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    buffer = memoryview(data)[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {_printable(name)!r}"
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and _is_index_list(entry.get("shape"))
            and _is_index_list(entry.get("data_offsets"))
            and len(entry["data_offsets"]) == 2
        ):
            raise CheckpointError(f"{where}: needs dtype, shape and two data_offsets")
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"{where}: dtype {_printable(entry['dtype'])} is not supported "
                f"(supported: {', '.join(_SAFETENSORS_DTYPES)})"
            )
        stored = _STORED_DTYPES[dtype]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        size = int(np.prod(shape, dtype=object)) * stored.itemsize
        if not begin <= end <= len(buffer):
            raise CheckpointError(
                f"{where}: data_offsets [{begin}, {end}] lie outside the {len(buffer)}-byte "
                "buffer: truncated or corrupt"
            )
        if end - begin != size:
            raise CheckpointError(
                f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes, its shape "
                f"{list(shape)} of {dtype} needs {size}"
            )
        elements = np.frombuffer(buffer[begin:end], dtype=stored).reshape(shape)
        tensors[name] = _widen(elements.copy(), dtype)  # A copy: writable, not the file's.
    return tensors


def _is_index_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(item) is int and item >= 0 for item in value)


# ---------------------------------------------------------------------------------------------
# torch: what the pickle's globals resolve to


class _StorageType(NamedTuple):
    """What `torch.FloatStorage` & co. resolve to: the dtype of the storage's elements.
    (Immutable, like every object find_class hands out: a pickle's BUILD opcode sets
    attributes on what it is given, and these are shared.)"""

    dtype: str


class _Unbuildable:
    """Refuses the pickle's BUILD opcode, which would otherwise set any attribute of the
    objects the unpickler made (a storage's dtype, a tensor's storage) to the file's values."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"BUILD of a {type(self).__name__.strip('_')}")


class _Storage(_Unbuildable):
    """One storage of a torch file: its key and dtype from the persistent id, its elements
    once read (`elements`), or a slice of another (`base`, legacy storage views)."""

    __slots__ = ("key", "dtype", "numel", "elements", "base", "base_offset")

    def __init__(self, key: str, dtype: str, numel: int, base=None, base_offset: int = 0):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.elements: np.ndarray | None = None
        self.base = base
        self.base_offset = base_offset

    def resolved(self) -> np.ndarray | None:
        if self.base is None:
            return self.elements
        base = self.base.resolved()
        if base is None:
            return None
        return base[self.base_offset : self.base_offset + self.numel]


class _TensorReference(_Unbuildable):
    """A tensor as the pickle describes it; made an array once every storage has been read
    (a legacy file stores the storages after the pickle)."""

    __slots__ = ("storage", "offset", "shape", "stride", "negative")

    def __init__(self, storage, offset, shape, stride, negative=False):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride
        self.negative = negative


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorReference(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    # metadata holds torch's lazy conj / neg bits; a real tensor can carry only "neg".
    negative = bool(isinstance(metadata, dict) and metadata.get("neg"))
    return _TensorReference(storage, storage_offset, size, stride, negative)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _size(dimensions=()):
    return tuple(dimensions)


class _Allowed(NamedTuple):
    """A callable find_class hands out, immutable so that BUILD cannot alter it."""

    function: Callable

    def __call__(self, *args):
        return self.function(*args)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Allowed(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Allowed(_rebuild_parameter_with_state),
    ("collections", "OrderedDict"): _Allowed(collections.OrderedDict),
    ("torch", "Size"): _Allowed(_size),
    **{("torch", name): _StorageType(dtype) for name, dtype in _TORCH_STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch object pickle, resolving only `_ALLOWED_GLOBALS`; storages become
    `_Storage`s registered in `storages` (key → storage), read by the caller afterwards."""

    def __init__(self, file, path: str, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self.path = path
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        qualified = _printable(f"{module}.{name}")
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(
                f"{self.path}: holds {qualified} tensors; supported dtypes: {_SUPPORTED}"
            )
        raise UnsafeCheckpointError(
            f"{self.path}: refuses to load: the pickle calls {qualified}, which a state dict "
            "never needs"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        fields = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == fields and _ascii(pid[0]) == "storage"):
            raise CheckpointError(
                f"{self.path}: unknown persistent id {_printable(repr(pid))} (corrupt file)"
            )
        storage_type, key, _location, numel = pid[1:5]
        key = _ascii(key)
        if not (
            isinstance(storage_type, _StorageType)
            and isinstance(key, str)
            and type(numel) is int
            and numel >= 0
        ):
            raise CheckpointError(f"{self.path}: malformed storage reference (corrupt file)")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        view = pid[5] if self.legacy else None
        if view is None:
            return storage
        # torch < 1.0 pickled storage views as (view key, element offset, elements).
        if not (
            isinstance(view, tuple)
            and len(view) == 3
            and all(type(number) is int and number >= 0 for number in view[1:])
        ):
            raise CheckpointError(f"{self.path}: malformed storage view (corrupt file)")
        return _Storage(_ascii(view[0]), storage.dtype, view[2], storage, view[1])


def _ascii(value: Any) -> Any:
    # Checkpoints pickled by Python 2 may give these as bytes (torch's _maybe_decode_ascii).
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _unpickle(unpickler: _RestrictedUnpickler, what: str) -> Any:
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{unpickler.path}: {what} nests too deeply (corrupt file)") from None
    except Exception as e:  # Anything a malformed pickle raises: it is data, not a bug here.
        raise CheckpointError(
            f"{unpickler.path}: {what} is not a valid pickle ({type(e).__name__}: "
            f"{_printable(str(e))}): truncated or corrupt"
        ) from None


# ---------------------------------------------------------------------------------------------
# torch: the two containers


def _read_torch_zip(path: str) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable zip archive ({e}): truncated?") from None
    with archive:
        names = archive.namelist()
        pickles = [name for name in names if name == "data.pkl" or name.endswith("/data.pkl")]
        if not pickles:
            raise CheckpointError(f"{path}: a zip archive without data.pkl: not a torch.save file")
        # The top folder's name varies ("archive", the file's stem); take the outermost.
        folder = min(pickles, key=lambda name: name.count("/"))[: -len("data.pkl")]
        if folder + "constants.pkl" in names:
            raise CheckpointError(
                f"{path}: is a TorchScript archive (torch.jit.save), not a state dict: "
                "save model.state_dict() with torch.save"
            )
        if folder + "byteorder" in names:
            byteorder = _zip_record(archive, path, folder + "byteorder")
            if byteorder != b"little":
                raise CheckpointError(
                    f"{path}: byteorder is {_printable(byteorder.decode('ascii', 'replace'))}; "
                    "only little-endian checkpoints are read"
                )
        unpickler = _RestrictedUnpickler(
            io.BytesIO(_zip_record(archive, path, folder + "data.pkl")), path, legacy=False
        )
        checkpoint = _unpickle(unpickler, "data.pkl")
        for key, storage in unpickler.storages.items():
            data = _zip_record(archive, path, f"{folder}data/{key}")
            storage.elements = _storage_elements(path, storage, data, f"data/{key}")
    return _materialize(checkpoint, path)


def _zip_record(archive: zipfile.ZipFile, path: str, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise CheckpointError(
            f"{path}: has no record {_printable(name)}: truncated or corrupt"
        ) from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: record {_printable(name)} is corrupt ({e})") from None


def _storage_elements(path: str, storage: _Storage, data, where: str) -> np.ndarray:
    stored = _STORED_DTYPES[storage.dtype]
    needed = storage.numel * stored.itemsize
    if len(data) < needed:
        raise CheckpointError(
            f"{path}: storage {where} holds {len(data)} bytes, its {storage.numel} "
            f"{storage.dtype} elements need {needed}: truncated or corrupt"
        )
    return np.frombuffer(data, dtype=stored, count=storage.numel)


def _read_torch_legacy(path: str) -> Any:
    with open(path, "rb") as file:
        data = file.read()
    stream = io.BytesIO(data)

    def unpickle(what: str) -> Any:
        return _unpickle(_RestrictedUnpickler(stream, path, legacy=True), what)

    try:
        magic_number = unpickle("the magic number")
    except UnsafeCheckpointError:
        raise
    except CheckpointError:
        magic_number = None
    if magic_number != _LEGACY_MAGIC_NUMBER:
        raise CheckpointError(
            f"{path}: a pickle but not a torch checkpoint (it does not start with torch's "
            "magic number)"
        )
    version = unpickle("the protocol version")
    if version != _LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{path}: unknown torch protocol version {_printable(repr(version))}")
    # The sys-info dict says the writer's byte order, but torch writes the storages
    # little-endian whatever it is (torch/csrc/serialization.cpp, writeFileRaw).
    unpickle("the sys-info record")
    unpickler = _RestrictedUnpickler(stream, path, legacy=True)
    checkpoint = _unpickle(unpickler, "the object")
    keys = unpickle("the storage key list")
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: the storage key list is not a list (corrupt file)")
    offset = stream.tell()
    for index, key in enumerate(keys):
        storage = unpickler.storages.get(_ascii(key))
        if storage is None:
            raise CheckpointError(
                f"{path}: storage {_printable(repr(key))} is listed but no tensor uses it "
                "(corrupt file)"
            )
        where = f"{index + 1} of {len(keys)}"
        if offset + 8 > len(data):
            raise CheckpointError(f"{path}: storage {where} is missing: truncated file")
        (numel,) = struct.unpack_from("<q", data, offset)
        end = offset + 8 + numel * _STORED_DTYPES[storage.dtype].itemsize
        if numel < 0 or end > len(data):
            raise CheckpointError(
                f"{path}: storage {where} ends at byte {end}, past the end of the file "
                f"({len(data)} bytes): truncated"
            )
        if numel != storage.numel:
            raise CheckpointError(
                f"{path}: storage {where} holds {numel} elements, its tensors' record says "
                f"{storage.numel} (corrupt file)"
            )
        storage.elements = _storage_elements(
            path, storage, memoryview(data)[offset + 8 : end], where
        )
        offset = end
    return _materialize(checkpoint, path)


# ---------------------------------------------------------------------------------------------
# torch: from references to arrays


def _materialize(value: Any, path: str, where: str = "") -> Any:
    """`value` with every tensor reference made an array, dicts plain dicts."""
    try:
        return _materialize_value(value, path, where)
    except RecursionError:
        raise CheckpointError(f"{path}: the object nests too deeply (corrupt file)") from None


def _materialize_value(value: Any, path: str, where: str) -> Any:
    if isinstance(value, _TensorReference):
        return _tensor(value, path, where)
    if isinstance(value, _Storage):  # A storage saved on its own: its elements, flat.
        return _tensor(_TensorReference(value, 0, (value.numel,), (1,)), path, where)
    if isinstance(value, dict):
        return {
            key: _materialize_value(entry, path, _join(where, key)) for key, entry in value.items()
        }
    if isinstance(value, list | tuple):
        items = [_materialize_value(entry, path, _join(where, i)) for i, entry in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def _join(where: str, key: Any) -> str:
    return f"{where}/{key}" if where else str(key)


def _tensor(reference: _TensorReference, path: str, where: str) -> np.ndarray:
    """The contiguous array a tensor reference describes: `shape` elements `stride` apart
    from `offset` in its storage, as torch's `set_(storage, offset, size, stride)`."""
    label = f"{path}: tensor {_printable(where)!r}"
    storage = reference.storage
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"{label} has no storage (corrupt file)")
    elements = storage.resolved()
    if elements is None:
        raise CheckpointError(f"{label}: its storage was never read (corrupt file)")
    shape, stride, offset = reference.shape, reference.stride, reference.offset
    if not (
        isinstance(shape, tuple | list)
        and isinstance(stride, tuple | list)
        and len(shape) == len(stride)
        and all(type(n) is int and n >= 0 for n in (offset, *shape, *stride))
    ):
        raise CheckpointError(
            f"{label} has a malformed shape {_printable(repr(shape))}, stride "
            f"{_printable(repr(stride))} or offset {_printable(repr(offset))} (corrupt file)"
        )
    shape, stride = tuple(shape), tuple(stride)
    if 0 in shape:
        view = np.empty(shape, elements.dtype)
    else:
        last = offset + sum((n - 1) * step for n, step in zip(shape, stride))
        if last >= elements.size:
            raise CheckpointError(
                f"{label} of shape {list(shape)} reaches element {last} of a storage of "
                f"{elements.size} (corrupt file)"
            )
        # In bounds, checked above: as_strided reads whatever memory it is pointed at.
        view = as_strided(
            elements[offset:],
            shape=shape,
            strides=[step * elements.itemsize for step in stride],
            writeable=False,
        )
    try:
        array = np.array(view, order="C")  # A copy: contiguous, writable, and not the file's.
    except MemoryError:  # A stride-0 view can claim any size over a one-element storage.
        raise CheckpointError(
            f"{label} of shape {list(shape)} does not fit in memory (corrupt file?)"
        ) from None
    array = _widen(array, storage.dtype)
    if reference.negative:
        array = np.negative(array)
    return array
