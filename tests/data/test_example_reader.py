"""Reading Example records: the host check, the graph-only decoder of tf.data service workers
(which must read what the host reads), skipping or naming damaged records and images."""

import pytest
import tensorflow as tf
from helpers import bomb_png, digit_pixels, encode

from official.data import example_reader, imagefile, tfrecord

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
        with pytest.raises(ValueError):
            tfrecord.image_and_label(record)


def test_other_keys_and_one_record_batches():
    record = _example(image=[b"png"], label=[4], file_name=[b"x.png"])
    ok, images, labels = example_reader.decode_examples(tf.constant([record]), "image", "label")
    assert (ok.numpy(), images.numpy(), labels.numpy()) == ([True], [b"png"], [4])
    assert tfrecord.image_and_label(record, "image", "label")[2] == 4


def test_damaged_wire_format_is_an_error_not_a_crash():
    damaged = GOOD[0][:-3]  # a length that runs past the end
    with pytest.raises(tf.errors.OpError):
        example_reader.decode_examples(tf.constant([GOOD[1], damaged]), IMAGE, LABEL)
    with pytest.raises(ValueError, match="truncated"):
        tfrecord.image_and_label(damaged)


def _reader(bad_records, skipped, max_image_pixels=imagefile.MAX_IMAGE_PIXELS):
    # Labels stored 1-based (tensorflow/tpu's ImageNet): 1..3 are the classes.
    return example_reader.ExampleReader(
        "tfrecord:somewhere",
        image_key=IMAGE,
        label_key=LABEL,
        label_offset=1,
        num_classes=3,
        bad_records=bad_records,
        max_image_pixels=max_image_pixels,
        skipped=skipped,
    )


def _triples(records):
    return tf.data.Dataset.from_tensor_slices(
        (records, ["dir/shard-1"] * len(records), tf.range(len(records), dtype=tf.int64))
    )


JPEGS = [encode(digit_pixels(i), "JPEG") for i in range(5)]


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("bad_records", ["skip", "fail"])
def test_reader_skips_or_names_records_outside_the_classes(portable, bad_records):
    labels = [1, 4, 3, 0, 2]  # 0 and 4 are no class
    records = [
        _example(image__encoded=[JPEGS[i]], image__class__label=[v]) for i, v in enumerate(labels)
    ]
    skipped = []
    read = _reader(bad_records, skipped).read(
        _triples(records), deterministic=True, portable=portable
    )
    if bad_records == "skip":
        got = list(read.as_numpy_iterator())
        assert got == [(JPEGS[0], 0), (JPEGS[2], 2), (JPEGS[4], 1)]
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


def test_images_that_cannot_be_decoded_are_damaged_records():
    """What the decoder would stop at later (or a bomb would exhaust memory with) is found from
    the image's bytes as the record is read, and named like any damaged record."""
    images = [
        JPEGS[0],
        b"not an image at all",
        JPEGS[1][:-40],  # truncated: no end-of-image marker
        bomb_png(),  # 20000x20000 pixels in a few hundred bytes
        encode(digit_pixels(2), "WEBP"),  # an image, but not one TensorFlow decodes
        encode(digit_pixels(3), "PNG"),
    ]
    records = [_example(image__encoded=[image], image__class__label=[1]) for image in images]
    skipped = []
    read = _reader("skip", skipped).read(_triples(records), deterministic=True, portable=False)
    assert [image for image, _ in read.as_numpy_iterator()] == [images[0], images[5]]
    assert dict(skipped) == {
        "shard-1 record 1": "image: not an image (unrecognised content)",
        "shard-1 record 2": "image: truncated JPEG (no end-of-image marker)",
        "shard-1 record 3": (
            "image: 20000x20000 pixels, above the limit of 89,478,485 (a decompression bomb?)"
        ),
        "shard-1 record 4": "image: webp images are not supported",
    }
    # The limit is the source's --config.data.max_image_pixels.
    skipped = []
    read = _reader("skip", skipped, max_image_pixels=500).read(
        _triples(records[:1] + records[5:]), deterministic=True, portable=False
    )
    assert list(read.as_numpy_iterator()) == [] and len(skipped) == 2


def test_each_record_is_walked_once_and_again_only_when_its_file_changed(monkeypatch):
    """Epochs after the first reuse the host check's verdict on each (file, index): same
    images, labels and skips, no second walk; a record of another size is checked again."""
    walked = []

    def counting(record, *keys):
        walked.append(record)
        return image_and_label(record, *keys)

    image_and_label = tfrecord.image_and_label
    monkeypatch.setattr(tfrecord, "image_and_label", counting)
    records = [
        _example(image__encoded=[JPEGS[i]], image__class__label=[v])
        for i, v in enumerate([1, 4, 3])  # 4 is no class
    ]
    skipped = []
    reader = _reader("skip", skipped)
    epoch = reader.read(_triples(records), deterministic=True, portable=False)
    expected = [(JPEGS[0], 0), (JPEGS[2], 2)]
    assert list(epoch.as_numpy_iterator()) == expected
    assert list(epoch.as_numpy_iterator()) == expected
    assert walked == records and [where for where, _ in skipped] == ["shard-1 record 1"]
    # The shard rewritten: record 0 holds another image and label, record 1 is unchanged.
    replaced = [_example(image__encoded=[JPEGS[4]], image__class__label=[2]), records[1]]
    assert len(replaced[0]) != len(records[0])
    epoch = reader.read(_triples(replaced), deterministic=True, portable=False)
    assert list(epoch.as_numpy_iterator()) == [(JPEGS[4], 1)]
    assert walked == records + replaced[:1] and len(skipped) == 1


@pytest.mark.parametrize("bad_records", ["skip", "fail"])
def test_an_empty_record_is_damaged_in_every_epoch(bad_records):
    """A zero-length record (valid framing, no Example) after a good one of the same shard:
    skipped and listed, or named, on every reading, never taken for a verdict already known."""
    records = [_example(image__encoded=[JPEGS[0]], image__class__label=[1]), b""]
    skipped = []
    epoch = _reader(bad_records, skipped).read(
        _triples(records), deterministic=True, portable=False
    )
    for _ in range(2):
        if bad_records == "skip":
            assert list(epoch.as_numpy_iterator()) == [(JPEGS[0], 0)]
            assert [where for where, _ in skipped] == ["shard-1 record 1"]
            continue
        with pytest.raises(tf.errors.OpError) as error:
            list(epoch.as_numpy_iterator())
        assert example_reader.explain_damaged(error.value).startswith(
            "tfrecord:somewhere: shard-1 record 1: "
        )
