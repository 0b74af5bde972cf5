"""Dataset preparation on real raccoon data: VOC and CSV agree, check passes, faults are reported exactly.

The data is the subset in tests/data/raccoon (its README.md): every count below is read from its files.

Small synthetic COCO, LISA and EXIF fixtures are in tests/test_dataset_formats.py.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import RACCOON
from tests.support import decode_all, records_of
from tfodkit.dataset import check, cli, convert, labelmap

TFOD_KEYS = {
    "image/encoded", "image/format", "image/height", "image/width", "image/filename", "image/source_id",
    "image/key/sha256", "image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
    "image/object/bbox/ymax", "image/object/class/text", "image/object/class/label", "image/object/difficult",
    "image/object/truncated",
}


def _identical_groups(folder: Path) -> list[list[str]]:
    """The names of byte-identical images, each group sorted (the tool reports all but the first)."""
    groups: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        groups.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path.name)
    return [g for g in groups.values() if len(g) > 1]


RACCOON_IMAGES = sorted(p.name for p in (RACCOON / "images").iterdir())
RACCOON_BOXES = sum(p.read_text().count("<object>") for p in (RACCOON / "annotations").glob("*.xml"))
RACCOON_IDENTICAL = _identical_groups(RACCOON / "images")
RACCOON_DUPLICATES = {name for group in RACCOON_IDENTICAL for name in group[1:]}


@pytest.fixture(scope="module")
def converted(raccoon, tmp_path_factory):
    """The raccoon dataset converted from its VOC folder and from its CSV (in-process, 2 workers)."""
    base = tmp_path_factory.mktemp("raccoon")
    out = {}
    for fmt, source in (("voc", raccoon / "annotations"), ("csv", raccoon / "data" / "raccoon_labels.csv")):
        data = convert.run(fmt, raccoon / "images", source, base / fmt, workers=2, progress=False,
                           out=io.StringIO())
        out[fmt] = (base / fmt, data)
    return out


def test_the_subset_has_what_these_tests_need():
    """Otherwise the tests below would pass without exercising duplicates, greyscale or several boxes."""
    assert RACCOON_DUPLICATES and RACCOON_BOXES > len(RACCOON_IMAGES)
    with Image.open(RACCOON / "images" / "raccoon-150.jpg") as im:
        assert im.mode == "L"
    csv_rows = (RACCOON / "data" / "raccoon_labels.csv").read_text().splitlines()[1:]
    assert sorted({row.split(",")[0] for row in csv_rows}) == RACCOON_IMAGES and len(csv_rows) == RACCOON_BOXES


def test_voc_and_csv_give_every_image_and_box(converted):
    everything = {"images": len(RACCOON_IMAGES), "boxes": RACCOON_BOXES}
    for fmt, (folder, data) in converted.items():
        totals = data["totals"]
        assert totals["input"] == everything, fmt
        assert totals["written"] == everything, fmt
        assert totals["dropped"] == {"images": {}, "boxes": {}} and totals["adds_up"], fmt
        assert data["splits"]["training"]["images"] + data["splits"]["testing"]["images"] == len(RACCOON_IMAGES)
        assert sorted(p.name for p in folder.iterdir()) == ["classes.pbtxt", "dataset.json", "testing.record",
                                                            "training.record"]
        assert (folder / "classes.pbtxt").read_text() == "item {\n  id: 1\n  name: 'raccoon'\n}\n\n"
        assert json.loads((folder / "dataset.json").read_text()) == data
        # The dataset holds pairs of byte-identical pictures, annotated independently: kept, reported.
        assert data["problems"]["counts"] == {"duplicate_image": len(RACCOON_DUPLICATES)}
        assert {p["file"] for p in data["problems"]["items"]} == RACCOON_DUPLICATES


@pytest.fixture(scope="module")
def decoded(converted):
    return {fmt: decode_all(records_of(folder)) for fmt, (folder, _) in converted.items()}


def test_voc_and_csv_give_the_same_examples(decoded, converted):
    voc, csv = decoded["voc"], decoded["csv"]
    assert sorted(voc) == sorted(csv) == RACCOON_IMAGES
    # the default split: a fifth of the units to testing, identical pictures (one unit) on the same side
    testing = {name for name, e in voc.items() if e["split"] == "testing"}
    assert len(testing) == converted["voc"][1]["splits"]["testing"]["images"]
    assert len(testing - RACCOON_DUPLICATES) == round(0.2 * (len(voc) - len(RACCOON_DUPLICATES)))
    for group in RACCOON_IDENTICAL:
        assert len({voc[name]["split"] for name in group}) == 1, group
    for name, a in voc.items():
        b = csv[name]
        assert a["split"] == b["split"], name  # same split too: it depends on names and classes only
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_allclose(a["boxes"], b["boxes"], rtol=0, atol=1e-7)
        assert a["classes"] == b["classes"] == [1] * len(a["classes"]), name
        assert a["difficult"] == b["difficult"], name
        fa, fb = a["example"].features.feature, b["example"].features.feature
        assert set(fa) == set(fb) == TFOD_KEYS, name
        for key in TFOD_KEYS - {"image/object/truncated"}:  # the CSV has no truncated column
            assert fa[key] == fb[key], (name, key)


def test_examples_hold_the_files_bytes_and_stored_sizes(decoded, raccoon):
    decoded = decoded["voc"]
    for name in ("raccoon-1.jpg", "raccoon-150.jpg"):  # colour, greyscale
        feature = decoded[name]["example"].features.feature
        data = (raccoon / "images" / name).read_bytes()
        assert feature["image/encoded"].bytes_list.value[0] == data  # not re-encoded
        assert feature["image/format"].bytes_list.value[0] == b"jpeg"
        with Image.open(raccoon / "images" / name) as im:
            assert (feature["image/width"].int64_list.value[0], feature["image/height"].int64_list.value[0]) == im.size
        assert decoded[name]["image"].shape[:2] == im.size[::-1]
    box = decoded["raccoon-1.jpg"]["boxes"][0]  # VOC: 81, 88, 522, 408 in a 650x417 image; TFOD order y, x
    np.testing.assert_allclose(box, [88 / 417, 81 / 650, 408 / 417, 522 / 650], rtol=1e-6)


def test_check_passes_on_converted_records(converted, tmp_path, capsys):
    for fmt, (folder, _) in converted.items():
        samples = tmp_path / f"{fmt}.png"
        assert cli.main(["check", str(folder), "--samples", str(samples), "--num_samples", "4"]) == 0
        text = capsys.readouterr().out
        assert f"{len(RACCOON_IMAGES)} records, {RACCOON_BOXES} boxes" in text and "check: ok" in text
        # within one split: a warning, not an error
        assert f"warning duplicate_image: {len(RACCOON_DUPLICATES)}" in text
        with Image.open(samples) as im:
            assert im.format == "PNG" and im.width >= 4 * 256


def test_check_passes_on_third_party_record(raccoon, tmp_path, capsys):
    """data/test.record: written by the dataset author's TF1-era script (image/format 'jpg', no sha256)."""
    record = raccoon / "data" / "test.record"
    examples = [tf.train.Example.FromString(s.numpy()) for s in tf.data.TFRecordDataset(str(record))]
    boxes = sum(len(e.features.feature["image/object/bbox/xmin"].float_list.value) for e in examples)
    assert examples and all(e.features.feature["image/format"].bytes_list.value == [b"jpg"] for e in examples)
    samples = tmp_path / "samples.png"
    code = cli.main(["check", str(record), "--samples", str(samples),
                     "--label_map", str(raccoon / "training" / "object-detection.pbtxt")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"{len(examples)} records, {boxes} boxes" in text and "problems: none" in text and "check: ok" in text
    assert samples.is_file()


# ---------------------------------------------------------------- injected faults

@pytest.fixture
def faulty(raccoon, tmp_path):
    """10 raccoon images with VOC files, and four faults injected."""
    images, annotations = tmp_path / "images", tmp_path / "annotations"
    images.mkdir()
    annotations.mkdir()
    for i in range(1, 11):
        shutil.copy(raccoon / "images" / f"raccoon-{i}.jpg", images)
        shutil.copy(raccoon / "annotations" / f"raccoon-{i}.xml", annotations)
    xml = annotations / "raccoon-1.xml"  # 650x417, box 81 88 522 408
    xml.write_text(xml.read_text().replace("<xmax>522</xmax>", "<xmax>700</xmax>"))
    (images / "raccoon-2.jpg").unlink()
    data = (images / "raccoon-3.jpg").read_bytes()
    (images / "raccoon-3.jpg").write_bytes(data[:len(data) // 2])  # cut short: opens in PIL, fails in TF
    (images / "raccoon-4.jpg").write_bytes(b"this is not a JPEG")
    return images, annotations


def boxes_in(raccoon, numbers) -> int:
    return sum((raccoon / "annotations" / f"raccoon-{i}.xml").read_text().count("<object>") for i in numbers)


def test_faults_are_reported_exactly_and_counted(faulty, raccoon, tmp_path, capsys):
    images, annotations = faulty
    out = tmp_path / "records"
    assert cli.main(["convert", "--format", "voc", "--images", str(images), "--annotations", str(annotations),
                     "--output_dir", str(out), "--no_progress"]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "dataset.json").read_text())
    assert data["problems"]["counts"] == {"missing_image": 1, "unreadable_image": 2, "box_outside_image": 1}
    items = {(p["kind"], p["file"]): p for p in data["problems"]["items"]}
    assert items[("box_outside_image", "raccoon-1.jpg")]["detail"] == (
        "box 'raccoon' (81, 88, 700, 408) is past the edge of the 650x417 image; clipped to (81, 88, 650, 408)")
    assert items[("box_outside_image", "raccoon-1.jpg")]["where"] == "raccoon-1.xml"
    n2, n3, n4 = (boxes_in(raccoon, [i]) for i in (2, 3, 4))
    assert items[("missing_image", "raccoon-2.jpg")]["detail"] == (
        f"no such file: {images / 'raccoon-2.jpg'}; its {n2} box(es) dropped")
    assert items[("unreadable_image", "raccoon-3.jpg")]["detail"] == (
        f"{images / 'raccoon-3.jpg'}: truncated JPEG: the data ends inside a scan, before the end-of-image marker; "
        f"its {n3} box(es) dropped")
    assert items[("unreadable_image", "raccoon-4.jpg")]["detail"] == (
        f"{images / 'raccoon-4.jpg'}: not an image (starts with b'this is '); its {n4} box(es) dropped")
    for p in data["problems"]["items"]:  # on screen too
        assert f"{p['file']} [{p['where']}]: {p['detail']}" in text
    all_boxes = boxes_in(raccoon, range(1, 11))
    assert data["totals"] == {
        "input": {"images": 10, "boxes": all_boxes},
        "written": {"images": 7, "boxes": all_boxes - n2 - n3 - n4},
        "dropped": {"images": {"missing_image": 1, "unreadable_image": 2},
                    "boxes": {"missing_image": n2, "unreadable_image": n3 + n4}},
        "adds_up": True,
    }
    decoded = decode_all(records_of(out))
    assert set(decoded) == {f"raccoon-{i}.jpg" for i in (1, 5, 6, 7, 8, 9, 10)}
    np.testing.assert_allclose(decoded["raccoon-1.jpg"]["boxes"][0], [88 / 417, 81 / 650, 408 / 417, 1.0], rtol=1e-6)
    assert cli.main(["check", str(out), "--num_samples", "0"]) == 0  # what was written is clean


def test_a_kind_with_more_than_ten_problems_lists_ten_on_screen_and_all_in_dataset_json(tmp_path, capsys):
    from tfodkit import synthetic

    data = synthetic.generate(tmp_path / "data", images=2, holdout=0, seed=0)
    with open(data / "annotations.csv", "a") as f:  # 12 rows naming images that are not there
        f.writelines(f"gone-{i:02d}.jpg,320,320,circle,10,10,50,50\n" for i in range(12))
    out = tmp_path / "records"
    assert cli.main(["convert", "--format", "csv", "--images", str(data / "images"), "--annotations",
                     str(data / "annotations.csv"), "--output_dir", str(out), "--no_progress"]) == 0
    text = capsys.readouterr().out
    shown = [line for line in text.splitlines() if line.startswith("    gone-")]
    assert len(shown) == 10 and "    ... and 2 more (all are listed in dataset.json)" in text
    assert "problems: 12\n  missing_image: 12  (" in text
    report = json.loads((out / "dataset.json").read_text())
    assert len([p for p in report["problems"]["items"] if p["kind"] == "missing_image"]) == 12


def test_strict_turns_problems_into_failure_and_writes_nothing(faulty, tmp_path, capsys):
    images, annotations = faulty
    out = tmp_path / "records"
    code = cli.main(["convert", "--format", "voc", "--images", str(images), "--annotations", str(annotations),
                     "--output_dir", str(out), "--strict", "--no_progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip() == ("error: 4 problem(s) found and --strict is set; nothing written (fix them, or "
                                    "run without --strict to clip, drop and report them)")
    assert "missing_image: 1" in captured.out and "unreadable_image: 2" in captured.out
    assert not out.exists()
    out.mkdir()  # an existing folder keeps what it had, and nothing else
    (out / "notes.txt").write_text("mine")
    assert cli.main(["convert", "--format", "voc", "--images", str(images), "--annotations", str(annotations),
                     "--output_dir", str(out), "--strict", "--no_progress"]) == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_label_map_with_id_0_is_refused_by_convert_and_check(raccoon, converted, tmp_path, capsys):
    bad = tmp_path / "labels.pbtxt"
    bad.write_text("item {\n  id: 0\n  name: 'raccoon'\n}\n")
    out = tmp_path / "records"
    code = cli.main(["convert", "--format", "csv", "--images", str(raccoon / "images"), "--annotations",
                     str(raccoon / "data" / "raccoon_labels.csv"), "--output_dir", str(out), "--label_map", str(bad)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {bad}: class 'raccoon' has id 0; ids start at 1 (0 is the background) "
        f"(fix the label map: unique names, unique ids from 1)")
    assert not out.exists()
    # check: the converted records against that label map: the map is wrong, and every box's label is unknown.
    result = check.run(converted["csv"][0], label_map=bad, samples=tmp_path / "s.png", n_samples=0,
                       out=io.StringIO())
    assert result["problems"] == {"label_map": 1, "unknown_label": RACCOON_BOXES,
                                  "text_label_mismatch": RACCOON_BOXES, "duplicate_image": len(RACCOON_DUPLICATES)}
    assert result["issues"][0] == {"kind": "label_map", "where": str(bad),
                                   "detail": f"{bad}: class 'raccoon' has id 0; ids start at 1 (0 is the background)"}
    assert result["errors"] == 1 + 2 * RACCOON_BOXES
    assert cli.main(["check", str(converted["csv"][0]), "--label_map", str(bad), "--num_samples", "0"]) == 1


def test_given_label_map_sets_ids_and_unknown_classes_are_dropped(faulty, tmp_path):
    images, annotations = faulty
    xml = annotations / "raccoon-5.xml"
    xml.write_text(xml.read_text().replace("<name>raccoon</name>", "<name>badger</name>", 1))
    given = tmp_path / "labels.pbtxt"
    given.write_text("item { id: 3 name: 'raccoon' }\nitem { id: 1 name: 'squirrel' }\n")
    data = convert.run("voc", images, annotations, tmp_path / "out", label_map_path=given, workers=1,
                       progress=False, out=io.StringIO())
    assert data["classes"] == [{"id": 1, "name": "squirrel"}, {"id": 3, "name": "raccoon"}]
    assert labelmap.load(tmp_path / "out" / "classes.pbtxt").items == ((1, "squirrel"), (3, "raccoon"))
    unknown = [p for p in data["problems"]["items"] if p["kind"] == "unknown_class"]
    assert unknown == [{"kind": "unknown_class", "file": "raccoon-5.jpg", "where": "raccoon-5.xml",
                        "detail": f"class 'badger' is not in the label map {given}; box (3, 3, 260, 179) dropped"}]
    assert data["totals"]["dropped"]["boxes"]["unknown_class"] == 1 and data["totals"]["adds_up"]
    decoded = decode_all(records_of(tmp_path / "out"))
    assert decoded["raccoon-5.jpg"]["classes"] == [] and decoded["raccoon-1.jpg"]["classes"] == [3]


def test_broken_xml_and_an_image_annotated_twice(faulty, tmp_path):
    images, annotations = faulty
    (annotations / "broken.xml").write_text("<annotation><filename>broken.jpg</filename><object>")
    shutil.copy(annotations / "raccoon-5.xml", annotations / "zz-raccoon-5.xml")
    data = convert.run("voc", images, annotations, tmp_path / "out", workers=2, progress=False, out=io.StringIO())
    items = [p for p in data["problems"]["items"] if p["kind"] in ("duplicate_file", "bad_annotation")]
    assert items[0] == {"kind": "duplicate_file", "file": "raccoon-5.jpg", "where": "zz-raccoon-5.xml",
                        "detail": "raccoon-5.jpg is annotated again in zz-raccoon-5.xml (first in raccoon-5.xml); "
                                  "1 box(es) dropped"}
    assert items[1]["kind"] == "bad_annotation" and items[1]["where"] == "broken.xml"
    assert items[1]["detail"].startswith("cannot read broken.xml: ")
    assert data["totals"]["input"]["images"] == 12 and data["totals"]["written"]["images"] == 7
    assert data["totals"]["dropped"]["images"] == {"missing_image": 1, "unreadable_image": 2, "duplicate_file": 1,
                                                   "bad_annotation": 1}
    assert data["totals"]["adds_up"]
