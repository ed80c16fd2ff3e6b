"""Re-reading a conversion catches what changed since it was written."""

from dataset_trees import make_tree

from official.data import convert, verify


def test_verify_catches_a_tampered_shard(tmp_path):
    make_tree(tmp_path / "raw")
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, train_shards=2)
    shard = out / "train-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40  # Same size: only the checksums can tell.
    shard.write_bytes(bytes(data))
    problems = verify.verify_output(str(out), num_workers=1)
    assert problems[0] == "train-00001-of-00002: sha256 differs from the manifest"
    assert any("checksum mismatch" in p or "record" in p for p in problems[1:])
    assert all(p.startswith("train-00001-of-00002") for p in problems)
