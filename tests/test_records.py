"""The records layout (tfodkit.records): file names, the glob TFOD gets, splits, and finding the records."""

from __future__ import annotations

import glob

import pytest

from tfodkit import records
from tfodkit.errors import UserError


def _touch(folder, *names, data: bytes = b"x"):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(data)
    return folder


def test_file_names_and_the_glob_name_exactly_one_splits_files(tmp_path):
    assert records.file_names("training", 1, sharded=False) == ["training.record"]
    names = records.file_names("training", 3, sharded=True)
    assert names == ["training-00000-of-00003.record", "training-00001-of-00003.record",
                     "training-00002-of-00003.record"]
    _touch(tmp_path, *names, *records.file_names("testing", 1, sharded=True), "training.record",
           "training-00000-of-00002.record")
    pattern = records.input_glob("training", 3, sharded=True)
    assert pattern == "training-?????-of-00003.record"
    assert sorted(glob.glob(str(tmp_path / pattern))) == [str(tmp_path / n) for n in names]
    assert records.input_glob("testing", 1, sharded=False) == "testing.record"


@pytest.mark.parametrize("name,split", [
    ("training.record", "training"), ("training-00001-of-00004.record", "training"), ("test.record", "test"),
    ("val-00000-of-00001.tfrecord", "val"), ("my-data.records", "my-data"), ("notes.txt", "notes"),
])
def test_split_of(name, split):
    assert records.split_of(name) == split


@pytest.mark.parametrize("name,owned", [
    ("training.record", True), ("testing-00002-of-00003.record", True), ("classes.pbtxt", True),
    ("dataset.json", True), ("samples.png", True), ("train.record", False), ("training.tfrecord", False),
    ("notes.txt", False),
])
def test_layout_files_are_what_convert_replaces(name, owned):
    assert records.is_layout_file(name) is owned


def test_missing_shards(tmp_path):
    files = [tmp_path / n for n in ("training-00000-of-00003.record", "training-00002-of-00003.record",
                                    "testing-00000-of-00001.record", "training.record")]
    assert records.missing_shards(files) == [("training", 3, [1])]


def test_split_files_takes_one_file_or_a_complete_set_of_shards(tmp_path):
    folder = _touch(tmp_path / "a", "training-00000-of-00002.record", "training-00001-of-00002.record",
                    "training-x-00000-of-00001.record")
    assert [p.name for p in records.split_files(folder, "training")] == [
        "training-00000-of-00002.record", "training-00001-of-00002.record"]
    assert records.split_files(folder, "testing") == []
    _touch(folder, "training.record")
    assert records.split_files(folder, "training") == [folder / "training.record"]  # one file wins
    gap = _touch(tmp_path / "b", "training-00000-of-00003.record", "training-00002-of-00003.record")
    with pytest.raises(UserError, match="training shards are incomplete"):
        records.split_files(gap, "training")
    mixed = _touch(tmp_path / "c", "training-00000-of-00001.record", "training-00000-of-00002.record",
                   "training-00001-of-00002.record")
    with pytest.raises(UserError, match="training shards are incomplete"):
        records.split_files(mixed, "training")


def test_read_dir_names_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        records.read_dir(tmp_path / "nope")
    folder = _touch(tmp_path / "r", "training.record")
    with pytest.raises(UserError) as err:
        records.read_dir(folder)
    assert str(err.value) == (f"{folder} lacks testing.record, classes.pbtxt (convert your annotations with: "
                              "python -m tfodkit.dataset convert ...)")
    _touch(folder, "testing.record", data=b"")
    (folder / "classes.pbtxt").write_text("item { id: 1 name: 'cat' }")
    with pytest.raises(UserError, match="empty record file"):
        records.read_dir(folder)
    _touch(folder, "testing.record")
    found = records.read_dir(folder)
    assert (found.train, found.test, found.labels.items) == ([folder / "training.record"],
                                                             [folder / "testing.record"], ((1, "cat"),))


def test_record_files_of_a_folder_a_file_or_a_glob(tmp_path):
    folder = _touch(tmp_path / "r", "train.record", "val.tfrecord", "classes.pbtxt")
    assert records.record_files(folder) == ([folder / "train.record", folder / "val.tfrecord"], folder)
    assert records.record_files(folder / "train.record") == ([folder / "train.record"], folder)
    assert records.record_files(tmp_path / "r" / "*.record") == ([folder / "train.record"], folder)
    with pytest.raises(UserError, match="no .record files"):
        records.record_files(_touch(tmp_path / "empty"))
    with pytest.raises(UserError, match="not found"):
        records.record_files(tmp_path / "nope")
