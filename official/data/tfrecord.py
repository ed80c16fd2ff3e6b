"""The TFRecord format: feature keys, and encode/decode of one image record.

The one place the format is defined; the converter (official/data/convert.py) writes it and the
input pipeline (official/data/pipeline.py) reads it. It is the format of tensorflow/tpu's
`imagenet_to_gcs.py` and TF Model Garden's ImageNet records (one `tf.train.Example` per image,
keys `image/encoded`, `image/class/label`, ...) plus the `image/class/text` field of TF-slim's
`build_imagenet_data.py`, so files written here feed those readers and theirs feed ours.

`encode`/`decode` and the record framing are plain Python (protobuf wire format and masked
CRC32C, as in tensorflow/core/lib/io/record_writer.cc): converter workers then start in a
fraction of a second instead of importing TensorFlow. The encoding is the deterministic
serialization of `tf.train.Example` (map entries sorted by key), so the same image always gives
the same bytes; tests/data/test_tfrecord.py checks both against TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

# Beside the shards in a converter's output directory: label index → synset and name, the label
# offset and record counts (labels.json); settings and per-shard checksums (manifest.json).
LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"
# Shard file names, as tensorflow/tpu's: train-00000-of-01024, validation-00000-of-00128.
SHARD_NAME = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
FILENAME = "image/filename"

_INT_KEYS = (CHANNELS, LABEL, HEIGHT, WIDTH)
_BYTES_KEYS = (ENCODED, FORMAT, SYNSET, TEXT, COLORSPACE, FILENAME)


def _bytes(text: str) -> bytes:
    """A name's bytes; names taken from a file system that are not UTF-8 (kept by Python as
    surrogate escapes) keep their original bytes."""
    return text.encode("utf-8", "surrogateescape")


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image as stored: the encoded bytes and what the readers need to know about them."""

    encoded: bytes
    label: int
    synset: str
    text: str
    height: int
    width: int
    filename: str
    channels: int = 3
    colorspace: str = "RGB"
    format: str = "JPEG"

    def features(self) -> dict[str, int | bytes]:
        return {
            ENCODED: self.encoded,
            FORMAT: _bytes(self.format),
            LABEL: self.label,
            SYNSET: _bytes(self.synset),
            TEXT: _bytes(self.text),
            HEIGHT: self.height,
            WIDTH: self.width,
            CHANNELS: self.channels,
            COLORSPACE: _bytes(self.colorspace),
            FILENAME: _bytes(self.filename),
        }


# --- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) -----------------
# Example{features=1}; Features{map<string, Feature> feature=1}; map entry{key=1, value=2};
# Feature{bytes_list=1, float_list=2, int64_list=3}; BytesList/Int64List{repeated value=1}.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # Negative int64 values take ten bytes (two's complement).
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int) -> bytes:
    return _varint(number << 3 | _LEN)


def _field(number: int, payload: bytes) -> bytes:
    return _tag(number) + _varint(len(payload)) + payload


# The key field of every map entry, encoded once; sorted, as protobuf's deterministic order.
_KEY_FIELDS = {key: _field(1, key.encode()) for key in sorted(_INT_KEYS + _BYTES_KEYS)}


def _entry_parts(key: str, value: int | bytes) -> tuple[bytes, bytes]:
    """One map entry {key: Feature} as (headers, value) whose concatenation is its encoding.

    The value stays a piece of its own behind the nested length headers, so the image bytes
    are copied once (by the final join) rather than once per nesting level.
    """
    if isinstance(value, bytes):
        feature_tag = _tag(1)  # Feature.bytes_list
    else:
        value = _varint(value)  # Int64List.value, packed
        feature_tag = _tag(3)  # Feature.int64_list
    inner = _tag(1) + _varint(len(value))  # BytesList.value / Int64List.value
    feature = feature_tag + _varint(len(inner) + len(value)) + inner
    entry = _KEY_FIELDS[key] + _tag(2) + _varint(len(feature) + len(value))
    return _tag(1) + _varint(len(entry) + len(feature) + len(value)) + entry + feature, value


def encode(record: ImageRecord) -> bytes:
    """The serialized tf.train.Example of one image (deterministic: keys in sorted order)."""
    features = record.features()
    parts = [part for key in _KEY_FIELDS for part in _entry_parts(key, features[key])]
    return b"".join([_tag(1), _varint(sum(map(len, parts))), *parts])


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("malformed protobuf varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


# The records are walked by position: a length-delimited value is its (start, end) in the
# whole record, so an image is never copied while its record is checked, and its position is
# what the input pipeline cuts it out by.
Span = tuple[int, int]


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | Span]]:
    """(field number, wire type, value or span) of each field of the message at data[start:end];
    nothing may run past `end`."""
    pos = start
    while pos < end:
        # Keys and most lengths are one byte: those are read without a call (the input
        # pipeline walks every record it reads).
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if wire_type == _LEN:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire_type == _VARINT:
            value, pos = _read_varint(data, pos, end)
        elif wire_type in (_I64, _I32):
            width = 8 if wire_type == _I64 else 4
            value, pos = (pos, pos + width), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield number, wire_type, value


def _submessage(value: int | Span, wire_type: int) -> Span:
    """A field this format nests (Features, map entries, lists, names, bytes): it must be
    length-delimited, whatever damaged bytes claim."""
    if wire_type != _LEN:
        raise ValueError(f"protobuf wire type {wire_type} where a message belongs")
    return value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_feature(data: bytes, span: Span) -> list[int] | list[Span] | list[float]:
    """The values of one tf.train.Feature: bytes_list (1, as spans), float_list (2) or
    int64_list (3).

    As strict as TensorFlow's parser (tensorflow/core/util/example_proto_fast_parsing.cc): any
    other field, or a value of the wrong wire type, makes the record damaged.
    """
    values: list = []
    for kind, kind_type, payload in _fields(data, *span):
        if kind not in (1, 2, 3):
            raise ValueError(f"unknown feature kind {kind}")
        for number, wire_type, value in _fields(data, *_submessage(payload, kind_type)):
            if number != 1:
                raise ValueError(f"unknown field {number} in a value list")
            if kind == 1:  # bytes_list
                values.append(_submessage(value, wire_type))
            elif kind == 2 and wire_type == _LEN:  # packed float_list
                first, last = value
                if (last - first) % 4:
                    raise ValueError("packed float list of a wrong length")
                values += [struct.unpack_from("<f", data, p)[0] for p in range(first, last, 4)]
            elif kind == 2:  # unpacked float_list
                if wire_type != _I32:
                    raise ValueError(f"protobuf wire type {wire_type} in a float list")
                values.append(struct.unpack_from("<f", data, value[0])[0])
            elif wire_type == _LEN:  # packed int64_list
                pos, last = value
                while pos < last:
                    item, pos = _read_varint(data, pos, last)
                    values.append(_signed(item))
            else:  # unpacked int64_list
                if wire_type != _VARINT:
                    raise ValueError(f"protobuf wire type {wire_type} in an int64 list")
                values.append(_signed(value))
    return values


def _features(data: bytes, wanted: frozenset[bytes] | None = None) -> dict[str, list]:
    """The features of a serialized Example (all, or those whose keys are `wanted`): key →
    list of ints, floats or spans of bytes. The structure leading to them is checked; the
    contents of other features are not read, so they are not checked either.

    Raises:
      ValueError: the bytes are not a well-formed Example (any field of the wrong number or
        wire type, a truncated or overlong length, a key that is not UTF-8).
    """
    features: dict[str, list] = {}
    for number, wire_type, payload in _fields(data, 0, len(data)):
        if number != 1:
            raise ValueError(f"unknown field {number} in an Example")
        for entry_number, entry_type, entry in _fields(data, *_submessage(payload, wire_type)):
            if entry_number != 1:
                raise ValueError(f"unknown field {entry_number} in Features")
            key, value = (0, 0), (0, 0)
            for part, part_type, content in _fields(data, *_submessage(entry, entry_type)):
                if part not in (1, 2):
                    raise ValueError(f"unknown field {part} in a feature entry")
                if part == 1:
                    key = _submessage(content, part_type)
                else:
                    value = _submessage(content, part_type)
            name = data[key[0] : key[1]]
            if wanted is None or name in wanted:
                features[name.decode()] = _decode_feature(data, value)
    return features


def decode_features(serialized: bytes) -> dict[str, list]:
    """Every feature of a serialized tf.train.Example: key → list of ints, floats or bytes.

    Raises:
      ValueError: the bytes are not a well-formed Example (any field of the wrong number or
        wire type, a truncated or overlong length, a key that is not UTF-8).
    """
    return {
        key: [serialized[v[0] : v[1]] if isinstance(v, tuple) else v for v in values]
        for key, values in _features(serialized).items()
    }


def image_and_label(
    serialized: bytes, image_key: str = ENCODED, label_key: str = LABEL
) -> tuple[int, int, int]:
    """(start, length of the encoded image within the record, label) of a record the input
    pipeline reads: an Example with one encoded image and one integer label (under these
    keys: TFDS's files name them "image" and "label").

    This is how the input pipeline reads records (official/data/example_reader.py): the whole
    record is checked here, on the host, and the image is cut out by its position, so
    TensorFlow's Example parser, which damaged records can crash, never runs.

    Raises:
      ValueError: why the record is not such an Example.
    """
    try:
        features = _features(serialized, frozenset({image_key.encode(), label_key.encode()}))
    except UnicodeDecodeError as e:
        raise ValueError(f"a feature name that is not UTF-8 ({e.reason})") from None
    encoded, label = features.get(image_key, []), features.get(label_key, [])
    if len(encoded) != 1 or not isinstance(encoded[0], tuple):
        raise ValueError(f"no single {image_key}")
    if len(label) != 1 or not isinstance(label[0], int):
        raise ValueError(f"no single integer {label_key}")
    (first, last), (value,) = encoded[0], label
    return first, last - first, value


def decode(serialized: bytes) -> ImageRecord:
    """The ImageRecord of a serialized tf.train.Example.

    Raises:
      ValueError: the bytes are not an Example with every key of the format.
    """
    features = decode_features(serialized)
    missing = [k for k in _INT_KEYS + _BYTES_KEYS if len(features.get(k, ())) != 1]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    text = {
        k: features[k][0].decode("utf-8", "surrogateescape") for k in _BYTES_KEYS if k != ENCODED
    }
    return ImageRecord(
        encoded=features[ENCODED][0],
        label=features[LABEL][0],
        synset=text[SYNSET],
        text=text[TEXT],
        height=features[HEIGHT][0],
        width=features[WIDTH][0],
        filename=text[FILENAME],
        channels=features[CHANNELS][0],
        colorspace=text[COLORSPACE],
        format=text[FORMAT],
    )


# --- TFRecord framing: length, masked CRC32C of the length, data, masked CRC32C of the data -----
_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def frame(data: bytes) -> bytes:
    """One TFRecord: the bytes to append to a .tfrecord file for `data`."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def read_records(stream: BinaryIO) -> Iterator[bytes]:
    """The records of a TFRecord file, each checked against its CRCs.

    Raises:
      ValueError: a truncated file or a checksum mismatch (the message gives the record index).
    """
    index = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
            raise ValueError(f"record {index}: corrupt or truncated length header")
        (length,) = struct.unpack("<Q", header[:8])
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4:
            raise ValueError(f"record {index}: truncated")
        if _masked_crc(data) != footer:
            raise ValueError(f"record {index}: data checksum mismatch")
        yield data
        index += 1
