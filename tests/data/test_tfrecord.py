"""The TFRecord format module against TensorFlow's own protobuf and record implementations."""

import dataclasses
import io

import pytest
import tensorflow as tf

from official.data import tfrecord

RECORD = tfrecord.ImageRecord(
    encoded=b"\xff\xd8\xff" + bytes(range(256)) * 40,
    label=65,
    synset="n01751748",
    text="sea snake",
    height=375,
    width=500,
    filename="ILSVRC2012_val_00000001.JPEG",
)


def test_encode_is_tensorflows_deterministic_serialization():
    serialized = tfrecord.encode(RECORD)
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    assert feature["image/class/label"].int64_list.value == [65]
    assert feature["image/height"].int64_list.value == [375]
    assert feature["image/width"].int64_list.value == [500]
    assert feature["image/channels"].int64_list.value == [3]
    assert feature["image/encoded"].bytes_list.value == [RECORD.encoded]
    assert feature["image/class/synset"].bytes_list.value == [b"n01751748"]
    assert feature["image/class/text"].bytes_list.value == [b"sea snake"]
    assert feature["image/format"].bytes_list.value == [b"JPEG"]
    assert feature["image/colorspace"].bytes_list.value == [b"RGB"]
    assert feature["image/filename"].bytes_list.value == [b"ILSVRC2012_val_00000001.JPEG"]
    # Byte for byte what protobuf writes with sorted map keys: the same record → the same bytes.
    assert example.SerializeToString(deterministic=True) == serialized


def test_decode_round_trips_ours_and_tensorflows():
    assert tfrecord.decode(tfrecord.encode(RECORD)) == RECORD
    negative = tfrecord.ImageRecord(b"x", -2, "", "ü", 1, 1, "f")
    assert tfrecord.decode(tfrecord.encode(negative)) == negative
    # A record built by TensorFlow (unsorted keys, an extra feature) decodes too.
    example = tf.train.Example.FromString(tfrecord.encode(RECORD))
    example.features.feature["image/object/bbox/xmin"].float_list.value.append(0.5)
    assert tfrecord.decode(example.SerializeToString()) == RECORD
    del example.features.feature["image/class/text"]
    with pytest.raises(ValueError, match="image/class/text"):
        tfrecord.decode(example.SerializeToString())


def test_framing_equals_tfrecordwriter_and_checksums_are_checked(tmp_path):
    path = tmp_path / "shard"
    payloads = [tfrecord.encode(RECORD), b"", b"second"]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    data = path.read_bytes()
    assert data == b"".join(tfrecord.frame(p) for p in payloads)
    assert list(tfrecord.read_records(io.BytesIO(data))) == payloads
    assert [bytes(r) for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()] == payloads

    flipped = bytearray(data)
    flipped[100] ^= 1
    with pytest.raises(ValueError, match="record 0: data checksum mismatch"):
        list(tfrecord.read_records(io.BytesIO(bytes(flipped))))
    with pytest.raises(ValueError, match="record 2: truncated"):
        list(tfrecord.read_records(io.BytesIO(data[:-3])))


def test_image_and_label_locate_what_tensorflows_parser_reads():
    """The input pipeline cuts images out of records by the positions found here, instead of
    running tf.io.parse_example (which damaged records can crash): on any well-formed record,
    TensorFlow's own included, both must read the same image and label."""
    example = tf.train.Example.FromString(tfrecord.encode(RECORD))
    example.features.feature["image/object/bbox/xmin"].float_list.value.extend([0.5, 0.25])
    example.features.feature["image/class/label"].int64_list.value[:] = [-7]
    other = dataclasses.replace(RECORD, encoded=b"", label=0)
    records = [
        tfrecord.encode(RECORD),
        tfrecord.encode(other),
        example.SerializeToString(),  # TensorFlow's order of keys; floats; a negative label.
    ]
    parsed = tf.io.parse_example(
        records,
        {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    for index, record in enumerate(records):
        start, length, label = tfrecord.image_and_label(record)
        assert record[start : start + length] == parsed["image/encoded"][index].numpy()
        assert label == int(parsed["image/class/label"][index])
    assert tfrecord.image_and_label(records[2])[2] == -7


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda f: f["image/encoded"].bytes_list.value.append(b"2nd"), "no single image/encoded"),
        (lambda f: f["image/class/label"].ClearField("int64_list"), "no single integer"),
        (lambda f: f["image/class/label"].float_list.value.append(1.0), "no single integer"),
        (lambda f: f.pop("image/encoded"), "no single image/encoded"),
    ],
)
def test_records_without_one_image_and_one_label_are_named(change, problem):
    example = tf.train.Example.FromString(tfrecord.encode(RECORD))
    change(example.features.feature)
    with pytest.raises(ValueError, match=problem):
        tfrecord.image_and_label(example.SerializeToString())
    assert tfrecord.image_and_label(tfrecord.encode(RECORD))[2] == RECORD.label
    with pytest.raises(ValueError, match="truncated"):
        tfrecord.image_and_label(tfrecord.encode(RECORD)[:-5])
