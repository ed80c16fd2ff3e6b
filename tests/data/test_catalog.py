"""Dataset facts: an incomplete copy of a known dataset is flagged."""

from official.data import catalog


def test_catalog_flags_an_incomplete_imagenet():
    assert catalog.lookup("imagenet2012/subset:5.1.0").num_examples["train"] == 1_281_167
    assert (
        catalog.count_mismatches("imagenet2012", 1000, {"train": 1_281_167, "validation": 50_000})
        == []
    )
    assert catalog.count_mismatches("imagenet2012", 999, {"train": 1_281_000}) == [
        "imagenet2012: 999 classes, expected 1000",
        "imagenet2012: 1,281,000 train examples, expected 1,281,167",
    ]
    assert catalog.count_mismatches("my_photos", 3, {"train": 10}) == []
