"""Files and export directories appear complete or not at all."""

import json
import os

import pytest

from official import atomic


def test_text_and_json_replace_the_file_in_one_step(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    assert atomic.write_text(str(path), "new") == str(path)
    assert path.read_text() == "new"
    atomic.write_json(str(tmp_path / "a.json"), {"b": 1, "a": [1, 2]}, indent=1)
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"a": [1, 2], "b": 1}
    assert text.startswith('{\n "a"') and text.endswith("}\n")  # sorted keys, final newline
    assert sorted(os.listdir(tmp_path)) == ["a.json", "notes.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"complete")
    with pytest.raises(RuntimeError), atomic.open_file(str(path), "wb", fsync=True) as f:
        f.write(b"half")
        assert sorted(os.listdir(tmp_path)) == [f".tmp-model.bin.{os.getpid()}", "model.bin"]
        raise RuntimeError("killed")
    assert path.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_a_directory_is_published_whole_or_not_at_all(tmp_path):
    final = tmp_path / "exports" / "3"
    final.parent.mkdir()
    with atomic.directory(str(final)) as temporary:
        assert os.path.basename(temporary).startswith(".tmp-3-")
        (open(os.path.join(temporary, "saved_model.pb"), "wb")).close()
        assert not final.exists()
    assert os.listdir(final) == ["saved_model.pb"]
    assert oct(final.stat().st_mode & 0o777) == oct(0o777 & ~_umask())

    failed = tmp_path / "exports" / "4"
    with pytest.raises(KeyboardInterrupt), atomic.directory(str(failed)) as temporary:
        os.makedirs(os.path.join(temporary, "variables"))
        raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path / "exports")) == ["3"]

    taken = tmp_path / "exports" / "5"
    with pytest.raises(FileExistsError, match="appeared"), atomic.directory(str(taken)) as tmp:
        (open(os.path.join(tmp, "a"), "wb")).close()
        taken.mkdir()
        (taken / "other").write_text("someone else's")
    assert os.listdir(taken) == ["other"]
    assert sorted(os.listdir(tmp_path / "exports")) == ["3", "5"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
