"""`tfds:imagenet2012` prepared from its manual dir, offline, and read through our public API.

The manual dir holds tiny but structurally real ILSVRC2012 tars, and TFDS's own imagenet2012
builder prepares them. Every image is a flat grey whose level identifies it, so the test can
tell which example each output image and label belong to.
"""

import io
import itertools
import socket
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import pipeline, preprocess, sources, tfrecord

tfds = pytest.importorskip("tensorflow_datasets")
constants = pytest.importorskip("tensorflow_datasets.core.constants")
gcs_utils = pytest.importorskip("tensorflow_datasets.core.utils.gcs_utils")

# Three real synsets (the classes of the first three validation images), each with two
# training images named like ImageNet's.
TRAIN_FILES = {
    "n01751748": ("n01751748_10016.JPEG", "n01751748_1004.JPEG"),  # sea snake
    "n02105855": ("n02105855_10095.JPEG", "n02105855_1010.JPEG"),  # Shetland sheepdog
    "n09193705": ("n09193705_1013.JPEG", "n09193705_10149.JPEG"),  # alp
}
NUM_VALIDATION = 4
IMAGE_SIZE = 24
GEOMETRY = preprocess.Geometry(IMAGE_SIZE, 0.875, "bilinear")
GREY_STEP = 22  # Image k is a flat 10 + 22 k grey: levels stay apart through JPEG and resizing.


def _jpeg(identity: int) -> bytes:
    grey = 10 + GREY_STEP * identity
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (grey, grey, grey)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    archive.addfile(member, io.BytesIO(data))


def _tar(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            _add(archive, name, data)
    return buffer.getvalue()


def _identity(image: np.ndarray) -> int:
    return int(round((float(image.mean()) - 10) / GREY_STEP))


def _read_split(source, split: str):
    """One evaluation pass of a split: (image identities, labels), in output order."""
    ds = pipeline.build_dataset(source, split=split, batch_size=3, geometry=GEOMETRY)
    identities, labels = [], []
    for images, batch_labels in ds.as_numpy_iterator():
        assert images.dtype == np.uint8 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
        for image in images:
            assert np.ptp(image) <= 4  # a flat grey survives decoding and cropping
            identities.append(_identity(image))
        labels += batch_labels.tolist()
    return identities, labels


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Fails on any network connection or gs:// lookup; TFDS's default data dir in tmp_path."""
    gcs_lookups = []

    def refuse_connection(self, address):
        raise AssertionError(f"network access to {address} during the test")

    def record_gcs_lookup(path):
        gcs_lookups.append(str(path))
        return False

    monkeypatch.setattr(socket.socket, "connect", refuse_connection)
    monkeypatch.setattr(gcs_utils, "exists", record_gcs_lookup)
    default_dir = tmp_path / "default_tfds_data_dir"
    monkeypatch.setenv("TFDS_DATA_DIR", str(default_dir))
    monkeypatch.setattr(constants, "DATA_DIR", str(default_dir))
    yield default_dir
    assert gcs_lookups == []
    assert not default_dir.exists()  # everything went to the data_dir we passed


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_imagenet2012_from_manual_dir(tmp_path, offline, repo):
    synsets = [line.split()[0] for line in (repo / "datasets/imagenet2012/synsets.txt").open()]
    # The builder pairs the *sorted* names in the validation tar with the lines of its bundled
    # labels file by position, so a small tar must hold exactly the first N validation images.
    labels_path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    validation_synsets = labels_path.read_text().split()[:NUM_VALIDATION]
    assert set(validation_synsets[:3]) == set(TRAIN_FILES)

    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    identities = itertools.count()
    train_labels = {}  # identity → label
    inner_tars = {}
    for synset, names in TRAIN_FILES.items():
        members = {}
        for name in names:
            members[name] = _jpeg(identity := next(identities))
            train_labels[identity] = synsets.index(synset)
        inner_tars[f"{synset}.tar"] = _tar(members)
    (manual_dir / "ILSVRC2012_img_train.tar").write_bytes(_tar(inner_tars))
    validation_labels = {}  # identity → label
    members = {}
    # Written in reverse to show that the tar's order does not matter, only the names.
    for index in reversed(range(NUM_VALIDATION)):
        members[f"ILSVRC2012_val_{index + 1:08d}.JPEG"] = _jpeg(identity := next(identities))
        validation_labels[identity] = synsets.index(validation_synsets[index])
    (manual_dir / "ILSVRC2012_img_val.tar").write_bytes(_tar(members))
    # No ILSVRC2012_img_test.tar: the builder leaves the test split out (with a warning).

    data_dir = tmp_path / "tfds"
    source = sources.open_source(
        "tfds:imagenet2012", tfds_data_dir=str(data_dir), tfds_manual_dir=str(manual_dir)
    )
    info = source.info
    assert info.name == "imagenet2012" and info.num_classes == 1000
    assert info.class_names == tuple(synsets)
    assert info.num_examples == {"train": 6, "validation": NUM_VALIDATION}
    assert (data_dir / "imagenet2012").is_dir()

    identities, labels = _read_split(source, "validation")
    assert sorted(identities) == sorted(validation_labels)  # each example exactly once
    assert labels == [validation_labels[i] for i in identities]
    assert sorted(labels) == sorted(synsets.index(s) for s in validation_synsets)

    identities, labels = _read_split(source, "train")
    assert sorted(identities) == sorted(train_labels)
    assert labels == [train_labels[i] for i in identities]
    assert [info.class_names[label] for label in sorted(set(labels))] == sorted(TRAIN_FILES)

    training = pipeline.build_dataset(
        source,
        split="train",
        batch_size=4,
        geometry=GEOMETRY,
        training=pipeline.Training(
            preprocessing=preprocess.TrainPreprocessing(), shuffle_buffer=10
        ),
    )
    images, labels = next(iter(training))
    assert images.dtype == np.uint8 and images.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert set(labels.numpy().tolist()) <= set(train_labels.values())

    # Later runs reuse the prepared copy: the manual dir is no longer needed.
    (manual_dir / "ILSVRC2012_img_train.tar").unlink()
    (manual_dir / "ILSVRC2012_img_val.tar").unlink()
    again = sources.open_source("tfds:imagenet2012", tfds_data_dir=str(data_dir))
    assert again.info == info
    assert sorted(_read_split(again, "validation")[1]) == sorted(validation_labels.values())

    # TFDS's files are read by our record reader, never by TensorFlow's Example parser: the
    # graph-only reader of tf.data service workers gives the same examples, and a damaged
    # record (valid framing) is skipped and named, or stops the reading in one line.
    def examples(source, portable=False, split="validation"):
        ds = source.examples(split, shuffle=False, seed=0, portable=portable)
        return list(ds.as_numpy_iterator())

    assert examples(again, portable=True) == examples(again)
    shares = [
        again.examples(
            "train", shuffle=True, seed=0, input_context=tf.distribute.InputContext(2, i, 1)
        )
        for i in range(2)
    ]
    shares = [sorted(image for image, _ in share.as_numpy_iterator()) for share in shares]
    assert sorted(shares[0] + shares[1]) == sorted(
        image for image, _ in examples(again, split="train")
    )
    assert min(map(len, shares)) >= 1 and not set(shares[0]) & set(shares[1])
    (shard,) = data_dir.glob("imagenet2012/*/imagenet2012-validation.tfrecord-*")
    with open(shard, "rb") as f:
        records = list(tfrecord.read_records(f))
    shard.write_bytes(b"".join(tfrecord.frame(r) for r in [records[0][:-9], *records[1:]]))
    skipping = sources.open_source(
        "tfds:imagenet2012", tfds_data_dir=str(data_dir), bad_records="skip"
    )
    assert len(examples(skipping)) == len(examples(skipping, portable=True)) == NUM_VALIDATION - 1
    assert [where for where, _ in skipping.skipped] == [f"{shard.name} record 0"]
    failing = sources.open_source("tfds:imagenet2012", tfds_data_dir=str(data_dir))
    named = f"tfds:imagenet2012: {shard.name} record 0: .*bad_records=skip"
    with pytest.raises(sources.DataError, match=named), sources.reading(failing):
        examples(failing)


def test_an_empty_manual_dir_is_one_line_that_says_what_goes_there(tmp_path, offline):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    with pytest.raises(sources.DataError) as error:
        sources.open_source(
            "tfds:imagenet2012",
            tfds_data_dir=str(tmp_path / "tfds"),
            tfds_manual_dir=str(manual_dir),
        )
    message = str(error.value)
    assert "\n" not in message and not message.rstrip(")").endswith(":")
    assert str(manual_dir) in message and "--config.data.tfds_manual_dir" in message
    assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in message
