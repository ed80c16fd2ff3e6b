"""The layouts of raw dataset trees the converter reads: which images, which labels."""

import hashlib
import json

import pytest
from dataset_trees import NAMES, SYNSETS, make_tree

from official.data import catalog, convert, layout, sources


def test_one_tree_stratified_split(tmp_path):
    make_tree(tmp_path / "raw", per_class=8, validation="none")
    tree = tmp_path / "raw" / "train"  # Class folders directly under the root.
    plans = [layout.discover(str(tree), validation_fraction=0.25, seed=seed) for seed in (0, 0, 1)]
    validation = [[p for p, _ in plan.splits["validation"]] for plan in plans]
    assert [label for _, label in plans[0].splits["validation"]] == [0, 0, 1, 1, 2, 2]
    assert len(plans[0].splits["train"]) == 18
    assert validation[0] == validation[1] != validation[2]
    summary = convert.convert(
        str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1, validation_fraction=0.25
    )
    assert summary.records == {"train": 18, "validation": 6}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: (raw / "train").rename(raw / "training"), "expected .*/train/<class>/"),
        (
            lambda raw: [p.unlink() for p in (raw / "train").rglob("*.*")],
            "no image files in the class folders",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").write_text("n01440764\n"),
            r"synset_labels.txt: 1 labels for 6 images",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").write_text("n01440764\nn99\n" * 3),
            r"line 2: synset 'n99' has no folder in",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").unlink(),
            "no class folders, and there is no .*synset_labels.txt",
        ),
        (
            lambda raw: (raw / "validation" / "n99").mkdir(),
            "holds both class folders and loose images",
        ),
    ],
)
def test_wrong_layouts_name_the_problem(tmp_path, damage, message):
    make_tree(tmp_path / "raw", per_class=2)
    damage(tmp_path / "raw")
    with pytest.raises(convert.ConversionError, match=message):
        convert.convert(str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1)
    assert not (tmp_path / "out").exists()  # Nothing half-written.


def test_unknown_validation_class_and_missing_validation(tmp_path):
    make_tree(tmp_path / "raw", per_class=2, validation="folders")
    (tmp_path / "raw" / "validation" / "n99999999").mkdir()
    with pytest.raises(convert.ConversionError, match="class 'n99999999' has no folder in"):
        layout.discover(str(tmp_path / "raw"))
    make_tree(tmp_path / "bare", per_class=2, validation="none")
    with pytest.raises(convert.ConversionError, match="pass --validation_fraction"):
        layout.discover(str(tmp_path / "bare"))


def test_bundled_imagenet_files():
    synsets = layout.read_synset_names(layout.IMAGENET_SYNSETS)
    assert len(synsets) == 1000 and sorted(synsets) == list(synsets)
    assert [synsets[s] for s in SYNSETS] == list(NAMES)
    assert synsets["n15075141"] == "toilet tissue, toilet paper, bathroom tissue"
    data = layout.IMAGENET_VALIDATION_SYNSETS.read_bytes()
    lines = data.decode().splitlines()
    assert len(lines) == 50_000 and set(lines) == set(synsets)
    assert all(lines.count(s) == 50 for s in SYNSETS)  # 50 validation images per class.
    # ILSVRC2012_val_00000001 is a sea snake, val_00050000 a llama (tensorflow/models' list).
    assert (lines[0], lines[-1]) == ("n01751748", "n02437616")
    assert hashlib.sha256(data).hexdigest() == (
        "313fc3f23c864dde9183c9a368809065765dd1b657a6904fded44e3e46d34604"
    )


def test_flat_imagenet_validation_uses_the_bundled_labels(tmp_path):
    (tmp_path / "validation").mkdir()
    path = layout._flat_validation_labels(
        str(tmp_path), str(tmp_path / "validation"), 50_000, labels_file=""
    )
    assert path == str(layout.IMAGENET_VALIDATION_SYNSETS)
    with pytest.raises(convert.ConversionError, match="holds 49999 images but no class"):
        layout._flat_validation_labels(
            str(tmp_path), str(tmp_path / "validation"), 49_999, labels_file=""
        )


def test_a_converted_imagenet_is_named_for_the_catalog(tmp_path, repo):
    synsets = [line.split("\t")[0] for line in (repo / "datasets/imagenet2012/synsets.txt").open()]
    assert layout.dataset_name(tuple(synsets)) == "imagenet2012"
    assert layout.dataset_name(tuple(reversed(synsets))) == "imagenet2012"  # any order
    assert layout.dataset_name(tuple(synsets[:-1]) + ("n99999999",)) == ""
    assert layout.dataset_name(tuple(synsets[:999])) == ""

    # The tfrecord: source reports the name, so its size is checked against the catalog.
    make_tree(tmp_path / "raw", validation="folders")
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1)
    assert sources.open_source(f"tfrecord:{out}").info.name == ""
    labels = json.loads((out / "labels.json").read_text())
    (out / "labels.json").write_text(json.dumps({**labels, "dataset": "imagenet2012"}))
    info = sources.open_source(f"tfrecord:{out}").info
    assert info.name == "imagenet2012"
    assert catalog.count_mismatches(info.name, info.num_classes, info.num_examples) == [
        "imagenet2012: 3 classes, expected 1000",
        "imagenet2012: 18 train examples, expected 1,281,167",
        "imagenet2012: 6 validation examples, expected 50,000",
    ]
