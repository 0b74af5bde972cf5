"""The one label-map parser (tfodkit.dataset.labelmap) and its rule set, as every tool that reads one sees it."""

from __future__ import annotations

import io

import pytest

from tfodkit import config, predict, records
from tfodkit.dataset import check, cli, labelmap
from tfodkit.errors import UserError

FIX = labelmap.FIX


def _load(tmp_path, text: str) -> labelmap.LabelMap:
    path = tmp_path / "m.pbtxt"
    path.write_text(text)
    return labelmap.load(path)


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "m.pbtxt"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        labelmap.load(path)
    line = str(err.value)
    assert "\n" not in line
    return line.replace(str(path), "M")


def test_display_name_only_names_the_class(tmp_path):
    lm = _load(tmp_path, "item { id: 1 display_name: 'Cat' }\nitem { id: 2 name: 'dog' }\n")
    assert lm.items == ((1, "Cat"), (2, "dog")) and lm.shown == {1: "Cat", 2: "dog"}
    assert lm.ids == {"Cat": 1, "dog": 2}


def test_name_identifies_and_display_name_is_shown(tmp_path):
    # COCO's own label map: the name is a code, the display name what people read.
    lm = _load(tmp_path, "item { name: '/m/01g317' id: 1 display_name: 'person' }\n")
    assert lm.names == {1: "/m/01g317"} and lm.shown == {1: "person"}
    assert lm.ids == {"/m/01g317": 1, "person": 1}  # TFOD's decoder maps a record's class text by either
    again = tmp_path / "again.pbtxt"
    again.write_text(labelmap.to_text(lm))  # the display name survives a round trip (convert writes it so)
    assert labelmap.load(again) == labelmap.LabelMap(lm.items, str(again), lm.display_names)


def test_gaps_in_ids_are_allowed_and_num_classes_is_the_largest_id(tmp_path):
    lm = _load(tmp_path, "item { id: 3 name: 'dog' }\nitem { id: 1 name: 'cat' }\n")
    assert lm.items == ((1, "cat"), (3, "dog")) and lm.num_classes == 3


def test_background_at_id_0_is_ignored(tmp_path):
    lm = _load(tmp_path, "item { id: 0 name: 'background' }\nitem { id: 1 name: 'cat' }\n")
    assert lm.items == ((1, "cat"),) and lm.num_classes == 1


@pytest.mark.parametrize("text,message", [
    ("", "M has no items"),
    ("# only a comment\n", "M has no items"),
    ("item { id: 0 name: 'background' }", "M has only the background (id 0)"),
    ("item { id: 1 name: 'cat' }\nitem { id: 1 name: 'dog' }", "M: id 1 is used twice ('cat' and 'dog')"),
    ("item { id: 1 name: 'cat' }\nitem { id: 2 name: 'cat' }", "M: class 'cat' appears twice (ids 1 and 2)"),
    ("item { id: 1 name: 'cat' }\nitem { id: 2 display_name: 'cat' }", "M: class 'cat' appears twice (ids 1 and 2)"),
    ("item { id: 0 name: 'cat' }", "M: class 'cat' has id 0; ids start at 1 (0 is the background)"),
    ("item { id: -1 name: 'cat' }", "M: class 'cat' has a negative id -1; ids start at 1"),
    ("item { id: 1 }", "M: the item with id 1 has no name"),
])
def test_invalid_label_maps_are_one_line_errors(tmp_path, text, message):
    assert _error(tmp_path, text) == f"{message} ({FIX})"


def test_every_problem_is_named_on_the_one_line(tmp_path):
    line = _error(tmp_path, "item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\nitem { id: -2 name: 'a' }\n")
    assert line == ("M: id 1 is used twice ('a' and 'b'); M: class 'a' has a negative id -2; ids start at 1; "
                    f"M: class 'a' appears twice (ids 1 and -2) ({FIX})")


def test_unreadable_files_are_one_line_errors(tmp_path):
    assert _error(tmp_path, "item { id: 1 nam: 'a' }").startswith("M is not a TFOD label map: 1:")
    (tmp_path / "m.pbtxt").write_bytes(b"item { id: 1 name: '\xff' }")
    with pytest.raises(UserError, match=r"is not UTF-8 text \(invalid start byte at byte 20\)"):
        labelmap.load(tmp_path / "m.pbtxt")
    with pytest.raises(UserError) as err:
        labelmap.load(tmp_path / "nope.pbtxt", "give --labels")
    assert str(err.value) == f"label map {tmp_path / 'nope.pbtxt'} does not exist (give --labels)"
    with pytest.raises(UserError, match="is not a file"):
        labelmap.load(tmp_path)


def test_every_tool_applies_the_same_rules(tmp_path, capsys):
    """readconfig's records, predict's --labels and dataset check read a label map through the one parser."""
    from tests.conftest import write_records

    folder = write_records(tmp_path / "records", {1: "cat", 3: "dog"})
    assert records.read_dir(folder).labels.num_classes == 3  # gaps: accepted by readconfig too
    assert predict.load_label_map(folder / records.LABEL_MAP) == {1: "cat", 3: "dog"}
    data = check.run(folder, n_samples=0, out=io.StringIO())
    assert "label_map" not in data["problems"]

    bad = tmp_path / "bad"
    write_records(bad, {1: "cat", 2: "cat"})
    expected = f"{bad / 'classes.pbtxt'}: class 'cat' appears twice (ids 1 and 2)"
    with pytest.raises(UserError, match="appears twice") as err:
        records.read_dir(bad)
    assert err.value.what == expected
    with pytest.raises(UserError) as err:
        predict.load_label_map(bad / records.LABEL_MAP)
    assert err.value.what == expected
    data = check.run(bad, n_samples=0, out=io.StringIO())
    assert [i["detail"] for i in data["issues"] if i["kind"] == "label_map"] == [expected]
    assert config.main(["--pretrained_model", "SSD MobileNet V2 FPNLite 320x320", "--records_dir", str(bad),
                        "--output_dir", str(tmp_path / "out"), "--from_scratch", "--num_gpus", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {expected} ({FIX})"


def test_labels_and_label_map_are_both_accepted(tmp_path, capsys):
    for flag in ("--labels", "--label_map"):
        args = predict.parse_args(["--model", "m", flag, "x.pbtxt", "--images", "a.jpg"])
        assert str(args.labels) == "x.pbtxt"
        parsed = cli.build_parser().parse_args(["check", "r", flag, "x.pbtxt"])
        assert str(parsed.label_map) == "x.pbtxt"
        parsed = cli.build_parser().parse_args(["convert", "--format", "csv", "--images", "i", "--annotations", "a",
                                                "--output_dir", "o", flag, "x.pbtxt"])
        assert str(parsed.label_map) == "x.pbtxt"
