"""The graph-only record decoder (for tf.data service workers) reads what the host's does."""

import pytest
import tensorflow as tf

from official.data import example_reader, tfrecord

IMAGE, LABEL = "image/encoded", "image/class/label"


def _example(**features) -> bytes:
    example = tf.train.Example()
    for key, values in features.items():
        key = key.replace("__", "/")
        feature = example.features.feature[key]
        if values and isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        elif values and isinstance(values[0], float):
            feature.float_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return example.SerializeToString()


GOOD = [
    _example(image__encoded=[b"jpeg-0"], image__class__label=[3]),
    _example(image__encoded=[b""], image__class__label=[-7], image__height=[5]),
    _example(image__encoded=[b"\xff\xd8 bytes"], image__class__label=[2**40], x=[0.5, 0.25]),
]
BAD = [
    _example(image__encoded=[b"a", b"b"], image__class__label=[1]),  # two images
    _example(image__encoded=[b"a"]),  # no label
    _example(image__encoded=[b"a"], image__class__label=[1, 2]),  # two labels
    _example(image__encoded=[b"a"], image__class__label=[1.0]),  # a float label
    _example(image__class__label=[1]),  # no image
    b"",  # an empty Example
]


def test_decode_examples_reads_what_the_host_decoder_reads():
    records = GOOD + BAD
    ok, images, labels = example_reader.decode_examples(tf.constant(records), IMAGE, LABEL)
    assert ok.numpy().tolist() == [True] * len(GOOD) + [False] * len(BAD)
    for index, record in enumerate(GOOD):
        start, length, label = tfrecord.image_and_label(record)
        assert images[index].numpy() == record[start : start + length]
        assert labels[index].numpy() == label
    for record in BAD:
        assert tfrecord.check_example(record) is not None


def test_other_keys_and_one_record_batches():
    record = _example(image=[b"png"], label=[4], file_name=[b"x.png"])
    ok, images, labels = example_reader.decode_examples(tf.constant([record]), "image", "label")
    assert (ok.numpy(), images.numpy(), labels.numpy()) == ([True], [b"png"], [4])
    assert tfrecord.image_and_label(record, "image", "label")[2] == 4


def test_damaged_wire_format_is_an_error_not_a_crash():
    damaged = GOOD[0][:-3]  # a length that runs past the end
    with pytest.raises(tf.errors.OpError):
        example_reader.decode_examples(tf.constant([GOOD[1], damaged]), IMAGE, LABEL)
    assert "truncated" in tfrecord.check_example(damaged)


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("bad_records", ["skip", "fail"])
def test_reader_skips_or_names_records_outside_the_classes(portable, bad_records):
    # Labels stored 1-based (tensorflow/tpu's ImageNet): 1..3 are the classes, 0 and 4 are not.
    labels = [1, 4, 3, 0, 2]
    records = [
        _example(image__encoded=[b"i%d" % i], image__class__label=[v]) for i, v in enumerate(labels)
    ]
    skipped = []
    reader = example_reader.ExampleReader(
        "tfrecord:somewhere",
        image_key=IMAGE,
        label_key=LABEL,
        label_offset=1,
        num_classes=3,
        bad_records=bad_records,
        skipped=skipped,
    )
    triples = tf.data.Dataset.from_tensor_slices(
        (records, ["dir/shard-1"] * len(records), tf.range(len(records), dtype=tf.int64))
    )
    read = reader.read(triples, deterministic=True, portable=portable)
    if bad_records == "skip":
        got = list(read.as_numpy_iterator())
        assert got == [(b"i0", 0), (b"i2", 2), (b"i4", 1)]
        if not portable:  # Workers log what they skip; the trainer's list is this process's.
            assert [where for where, _ in skipped] == ["shard-1 record 1", "shard-1 record 3"]
            assert "label 4 outside 1..3" in skipped[0][1]
        return
    with pytest.raises(tf.errors.OpError) as error:
        list(read.as_numpy_iterator())
    line = example_reader.explain_damaged(error.value)
    assert line.startswith("tfrecord:somewhere: shard-1 record 1: ")
    assert line.endswith("(--config.data.bad_records=skip skips such records)")
    assert "]" not in line
