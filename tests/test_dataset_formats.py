"""Dataset preparation on small fixtures the tests write: COCO, LISA, CSV (EXIF, shards, split), foreign records."""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import ROOT
from tests.support import decode_all, records_of
from tfodkit.__main__ import main as tfodkit_main
from tfodkit.dataset import check, cli, convert, labelmap
from tfodkit.dataset.readers import Entry, Obj


def picture(path: Path, size: tuple[int, int], seed: int = 0, **save) -> bytes:
    """A small noisy picture (JPEG or PNG by suffix) whose bytes differ per seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path.read_bytes()


def quiet_convert(*args, **kwargs) -> dict:
    return convert.run(*args, progress=False, out=io.StringIO(), **kwargs)


# ---------------------------------------------------------------- COCO

@pytest.fixture
def coco(tmp_path):
    images = tmp_path / "images"
    picture(images / "a.jpg", (96, 64), 1)
    picture(images / "sub" / "b.png", (80, 60), 2)
    picture(images / "c.jpg", (96, 64), 3)
    picture(images / "e.jpg", (96, 64), 4)
    data = {
        "images": [{"id": 10, "file_name": "a.jpg", "width": 96, "height": 64},
                   {"id": 11, "file_name": "sub/b.png", "width": 80, "height": 60},
                   {"id": 12, "file_name": "c.jpg", "width": 96, "height": 64},
                   {"id": 13, "file_name": "missing.jpg", "width": 96, "height": 64},
                   {"id": 14, "file_name": "e.jpg", "width": 96, "height": 64}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 5, 20, 30], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [50, 10, 40, 40], "iscrowd": 1},
            {"id": 3, "image_id": 11, "category_id": 7, "bbox": [0, 0, 80, 60], "iscrowd": 0},
            {"id": 4, "image_id": 11, "category_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 5, "image_id": 999, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 6, "image_id": 13, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 7, "image_id": 14, "category_id": 3, "bbox": [100, 10, 10, 10], "iscrowd": 0},
            {"id": 8, "image_id": 14, "category_id": 7, "bbox": [90, 50, 20, 20], "iscrowd": 0},
        ],
    }
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


def test_coco_with_crowd_boxes_and_every_problem_counted(coco, tmp_path):
    images, annotations = coco
    out = tmp_path / "records"
    data = quiet_convert("coco", images, annotations, out, test_fraction=0.25, workers=2)
    assert data["classes"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]  # category id order
    items = {(p["kind"], p["where"]): p["detail"] for p in data["problems"]["items"]}
    assert items == {
        ("missing_image", "instances.json image id 13"): f"no such file: {images / 'missing.jpg'}; its 1 box(es) "
                                                         f"dropped",
        ("bad_annotation", "instances.json annotation id 5"): "annotation 5 refers to image id 999, which is not in "
                                                              "'images'",
        ("unknown_class", "instances.json annotation id 4"): "category id 99 is not in 'categories'",
        ("zero_area_box", "instances.json image id 14"): "box 'cat' (100, 10, 110, 20) lies outside the 96x64 "
                                                         "image; dropped",
        ("box_outside_image", "instances.json image id 14"): "box 'dog' (90, 50, 110, 70) is past the edge of the "
                                                             "96x64 image; clipped to (90, 50, 96, 64)",
    }
    assert data["totals"] == {
        "input": {"images": 5, "boxes": 8}, "written": {"images": 4, "boxes": 4},
        "dropped": {"images": {"missing_image": 1},
                    "boxes": {"missing_image": 1, "bad_annotation": 1, "unknown_class": 1, "zero_area_box": 1}},
        "adds_up": True}
    decoded = decode_all(records_of(out))
    assert set(decoded) == {"a.jpg", "sub/b.png", "c.jpg", "e.jpg"}
    a = decoded["a.jpg"]
    assert a["classes"] == [1, 2]
    np.testing.assert_allclose(a["boxes"], [[5 / 64, 10 / 96, 35 / 64, 30 / 96], [10 / 64, 50 / 96, 50 / 64, 90 / 96]],
                               rtol=1e-6)
    feature = a["example"].features.feature
    assert list(feature["image/object/is_crowd"].int64_list.value) == [0, 1]
    assert feature["image/source_id"].bytes_list.value[0] == b"10"
    b = decoded["sub/b.png"]["example"].features.feature
    assert b["image/format"].bytes_list.value[0] == b"png"
    assert decoded["c.jpg"]["classes"] == []  # an image without boxes stays, as a negative example
    result = check.run(out, n_samples=2, out=io.StringIO())
    assert result["errors"] == 0 and result["records"] == 4 and result["boxes"] == 4


def test_summary_says_images_without_boxes_are_kept_as_background(coco, tmp_path):
    images, annotations = coco
    summary = io.StringIO()
    data = convert.run("coco", images, annotations, tmp_path / "r", test_fraction=0.0, workers=1, progress=False,
                       out=summary)
    assert data["splits"]["training"]["images_without_boxes"] == 1  # c.jpg has no annotation
    assert ("  note: images without boxes, kept as background (negative) examples: 1 in training "
            "(images_without_boxes in dataset.json)\n") in summary.getvalue()
    (images / "c.jpg").unlink()  # every image left has a box: no note
    summary = io.StringIO()
    convert.run("coco", images, annotations, tmp_path / "r", test_fraction=0.0, workers=1, progress=False,
                out=summary)
    assert "without boxes" not in summary.getvalue()


def test_tfod_decoder_reads_is_crowd(coco, tmp_path):
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

    images, annotations = coco
    quiet_convert("coco", images, annotations, tmp_path / "r", test_fraction=0.0, workers=1)
    decoder = TfExampleDecoder()
    crowd = {}
    for serialized in tf.data.TFRecordDataset(str(tmp_path / "r" / "training.record")):
        d = decoder.decode(serialized)
        crowd[d[fields.InputDataFields.source_id].numpy()] = d[fields.InputDataFields.groundtruth_is_crowd].numpy()
    assert crowd[b"10"].tolist() == [False, True]


# ---------------------------------------------------------------- LISA

LISA_HEADER = ("Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
               "Lower right corner Y;Occluded,On another road;Origin file;Origin frame number;Origin track;"
               "Origin track frame number")


def test_lisa_semicolon_csv(tmp_path):
    folder = "aiua120214-0/frameAnnotations-DataLog02142012_external_camera.avi_annotations"
    rows = [LISA_HEADER,
            f"{folder}/stop_1330545910.avi_image0.png;stop;10;12;40;44;0,0;x.avi;2667;stop_1330545910.avi;2",
            f"{folder}/stop_1330545910.avi_image0.png;pedestrianCrossing;60;20;90;50;0,0;x.avi;2667;p.avi;2",
            f"{folder}/speed_1330545911.avi_image1.png;speedLimit35;5;5;30;30;1,0;x.avi;2668;s.avi;3",
            f"{folder}/gone.png;stop;5;5;30;30;0,0;x.avi;2669;g.avi;4",
            f"{folder}/speed_1330545911.avi_image1.png;stop;5;five;30;30;0,0;x.avi;2668;s.avi;3"]
    (tmp_path / "allAnnotations.csv").write_text("\n".join(rows) + "\n")
    picture(tmp_path / folder / "stop_1330545910.avi_image0.png", (128, 96), 1)
    picture(tmp_path / folder / "speed_1330545911.avi_image1.png", (128, 96), 2)
    out = tmp_path / "records"
    data = quiet_convert("lisa", tmp_path, tmp_path / "allAnnotations.csv", out, test_fraction=0.0, workers=1)
    assert (out / "classes.pbtxt").read_text() == (
        "item {\n  id: 1\n  name: 'pedestrianCrossing'\n}\n\nitem {\n  id: 2\n  name: 'speedLimit35'\n}\n\n"
        "item {\n  id: 3\n  name: 'stop'\n}\n\n")
    assert data["problems"]["counts"] == {"missing_image": 1, "bad_annotation": 1}
    bad = next(p for p in data["problems"]["items"] if p["kind"] == "bad_annotation")
    assert bad == {"kind": "bad_annotation", "file": f"{folder}/speed_1330545911.avi_image1.png",
                   "where": "allAnnotations.csv line 6",
                   "detail": "bad box ['stop', '5', 'five', '30', '30']: could not convert string to float: 'five'"}
    assert data["totals"]["input"] == {"images": 3, "boxes": 5} and data["totals"]["adds_up"]
    decoded = decode_all(records_of(out))
    first = decoded[f"{folder}/stop_1330545910.avi_image0.png"]
    assert first["classes"] == [3, 1]
    np.testing.assert_allclose(first["boxes"][0], [12 / 96, 10 / 128, 44 / 96, 40 / 128], rtol=1e-6)
    assert check.run(out, n_samples=0, out=io.StringIO())["errors"] == 0


def test_missing_columns_are_a_usage_error(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("file,label,x1,y1,x2,y2\na.jpg,cat,1,2,3,4\n")
    code = cli.main(["convert", "--format", "csv", "--images", str(tmp_path), "--annotations",
                     str(tmp_path / "labels.csv"), "--output_dir", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.startswith(
        f"error: {tmp_path / 'labels.csv'} lacks the column(s) filename, class, xmin, ymin, xmax, ymax (header: "
        f"file,label,x1,y1,x2,y2) (the CSV needs a header")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- EXIF orientation

def test_exif_rotated_image_uses_stored_pixels_and_reports_the_rotated_annotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": viewers show 32x64, the pixels are stored 64x32
    picture(tmp_path / "phone.jpg", (64, 32), 5, exif=exif.tobytes())
    picture(tmp_path / "plain.jpg", (64, 32), 6)
    (tmp_path / "labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                         "phone.jpg,32,64,cat,4,4,20,30\nplain.jpg,64,32,cat,4,4,20,30\n")
    data = quiet_convert("csv", tmp_path, tmp_path / "labels.csv", tmp_path / "out", test_fraction=0.0, workers=1)
    assert data["problems"]["items"] == [{
        "kind": "size_mismatch", "file": "phone.jpg", "where": "labels.csv line 2",
        "detail": "the annotation says 32x64, the file is 64x32; EXIF orientation 6: the annotation used the rotated "
                  "view but TFOD reads the stored pixels, so the boxes are probably rotated (apply the rotation to "
                  "the pixels, e.g. PIL.ImageOps.exif_transpose, and annotate again); boxes kept"}]
    decoded = decode_all(records_of(tmp_path / "out"))
    phone = decoded["phone.jpg"]
    assert phone["image"].shape == (32, 64, 3)  # TFOD decodes the stored pixels, no EXIF rotation
    feature = phone["example"].features.feature
    assert (feature["image/width"].int64_list.value[0], feature["image/height"].int64_list.value[0]) == (64, 32)
    np.testing.assert_allclose(phone["boxes"][0], [4 / 32, 4 / 64, 30 / 32, 20 / 64], rtol=1e-6)


# ---------------------------------------------------------------- split, shards, determinism

@pytest.fixture
def three_classes(tmp_path):
    """30 pictures: 20 with 'a', 6 with 'b', 4 with 'c' (some with 'a' as well)."""
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for i in range(30):
        name = f"img{i:02d}.jpg"
        picture(tmp_path / "images" / name, (48, 32), 100 + i)
        cls = "a" if i < 20 else "b" if i < 26 else "c"
        rows.append(f"{name},48,32,{cls},2,2,20,20")
        if i % 3 == 0 and cls != "a":
            rows.append(f"{name},48,32,a,22,4,40,30")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "images", tmp_path / "labels.csv"


def test_split_is_stratified_and_deterministic(three_classes, tmp_path):
    images, labels = three_classes
    data = quiet_convert("csv", images, labels, tmp_path / "s1", workers=2)
    assert data["stratified"]
    assert data["splits"]["training"]["images"] == 24 and data["splits"]["testing"]["images"] == 6
    for cls in ("a", "b", "c"):
        assert data["splits"]["testing"]["classes"][cls]["images"] >= 1, cls
        assert data["splits"]["training"]["classes"][cls]["images"] >= 1, cls
    again = quiet_convert("csv", images, labels, tmp_path / "s2", workers=1)  # serial: same bytes
    for name in ("training.record", "testing.record", "classes.pbtxt", "dataset.json"):
        assert (tmp_path / "s1" / name).read_bytes() == (tmp_path / "s2" / name).read_bytes(), name
    assert again["splits"] == data["splits"]
    other = quiet_convert("csv", images, labels, tmp_path / "s3", seed=7, workers=2)
    assert set(decode_all([tmp_path / "s3" / "testing.record"])) != set(decode_all([tmp_path / "s1" /
                                                                                    "testing.record"]))
    assert other["stratified"]


def test_split_function_keeps_duplicates_together_and_ignores_input_order():
    entries = [Entry(f"{i:03d}.jpg", "x", [Obj("a" if i % 5 else "b", 0, 0, 1, 1)]) for i in range(50)]
    dup_of = {7: 3, 9: 3}
    training, testing, stratified = convert.split(entries, 0.2, 42, dup_of)
    assert stratified and len(testing) in (9, 10, 11) and sorted(training + testing) == list(range(50))
    assert len({3, 7, 9} & set(testing)) in (0, 3)
    order = list(reversed(range(50)))
    reversed_entries = [entries[i] for i in order]
    _, testing_r, _ = convert.split(reversed_entries, 0.2, 42, {order.index(k): order.index(v)
                                                               for k, v in dup_of.items()})
    assert sorted(reversed_entries[i].filename for i in testing_r) == sorted(entries[i].filename for i in testing)


def test_shards_and_stale_outputs(three_classes, tmp_path, capsys):
    images, labels = three_classes
    out = tmp_path / "records"
    data = quiet_convert("csv", images, labels, out, shards=3, workers=2)
    names = sorted(p.name for p in records_of(out))
    assert names == ["testing-00000-of-00001.record", "training-00000-of-00003.record",
                     "training-00001-of-00003.record", "training-00002-of-00003.record"]
    assert data["input_paths"] == {"training": "training-?????-of-00003.record",
                                   "testing": "testing-?????-of-00001.record"}
    assert sorted(tf.io.gfile.glob(str(out / data["input_paths"]["training"]))) == [str(out / n) for n in names[1:]]
    sizes = [sum(1 for _ in tf.data.TFRecordDataset(str(out / n))) for n in names[1:]]
    assert sum(sizes) == 24 and max(sizes) - min(sizes) <= 3
    assert tfodkit_main(["dataset", "check", str(out), "--num_samples", "0"]) == 0
    assert "check: ok" in capsys.readouterr().out
    (out / names[2]).unlink()
    assert tfodkit_main(["dataset", "check", str(out), "--num_samples", "0"]) == 1
    text = capsys.readouterr().out
    assert "error missing_shard: 1" in text and "shard(s) 1 of 3 missing for training" in text
    assert "error count_mismatch: 2" in text  # dataset.json knows how many there were
    quiet_convert("csv", images, labels, out, workers=1)  # back to one file per split: old shards go
    assert sorted(p.name for p in out.iterdir()) == ["classes.pbtxt", "dataset.json", "testing.record",
                                                     "training.record"]


# ---------------------------------------------------------------- check on foreign records

def _example(image: bytes, *, height=24, width=32, boxes=((0.1, 0.1, 0.5, 0.5),), labels=(1,), texts=(b"a",),
             fmt=b"jpeg", name=b"x.jpg") -> bytes:
    ex = tf.train.Example()
    f = ex.features.feature
    f["image/encoded"].bytes_list.value.append(image)
    f["image/format"].bytes_list.value.append(fmt)
    f["image/filename"].bytes_list.value.append(name)
    f["image/height"].int64_list.value.append(height)
    f["image/width"].int64_list.value.append(width)
    for i, key in enumerate(("xmin", "ymin", "xmax", "ymax")):
        f[f"image/object/bbox/{key}"].float_list.value.extend(b[i] for b in boxes)
    f["image/object/class/label"].int64_list.value.extend(labels)
    f["image/object/class/text"].bytes_list.value.extend(texts)
    return ex.SerializeToString()


def test_check_reports_what_other_tools_get_wrong(tmp_path, capsys):
    good = picture(tmp_path / "good.jpg", (32, 24), 1, quality=95)
    other = picture(tmp_path / "other.jpg", (32, 24), 2, quality=95)
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "classes.pbtxt").write_text("item { id: 1 name: 'a' }\nitem { id: 2 name: 'b' }\n"
                                          "item { id: 3 name: 'c' }\n")
    with tf.io.TFRecordWriter(str(folder / "train.record")) as w:
        w.write(_example(good, name=b"good.jpg"))
        w.write(_example(other, name=b"label0.jpg", labels=(0,)))
        w.write(_example(other, name=b"mismatch.jpg", texts=(b"b",)))
        w.write(_example(other, name=b"outside.jpg", boxes=((0.1, 0.1, 1.2, 0.5),)))
        w.write(_example(other, name=b"lengths.jpg", labels=(1, 1)))
        w.write(_example(other, name=b"height.jpg", height=99))
        w.write(_example(other[:len(other) // 2], name=b"cut.jpg"))
        w.write(_example(other, name=b"flat.jpg", boxes=((0.3, 0.1, 0.3, 0.5),)))
        w.write(b"not a tf.train.Example")
    with tf.io.TFRecordWriter(str(folder / "test.record")) as w:
        w.write(_example(good, name=b"leak.jpg"))
    whole = (folder / "test.record").read_bytes()
    (folder / "val.record").write_bytes(whole + whole[:len(whole) // 2])  # damaged file
    code = tfodkit_main(["dataset", "check", str(folder), "--samples", str(tmp_path / "s.png")])
    text = capsys.readouterr().out
    assert code == 1
    result = check.run(folder, n_samples=0, out=io.StringIO())
    assert result["problems"] == {
        "corrupt_record": 1, "not_an_example": 1, "decode_error": 1, "box_lists_mismatch": 1, "label_zero": 1,
        "text_label_mismatch": 2, "box_outside_image": 1, "zero_area_box": 1, "size_mismatch": 1,
        "split_leak": 2, "unused_class": 1, "duplicate_image": 5}  # 'other' is in 6 records; good.jpg in 3 files
    assert result["errors"] == 12
    issues = {(i["kind"], i["where"]): i["detail"] for i in result["issues"]}
    assert issues[("label_zero", "train.record record 1 (label0.jpg)")] == (
        "box 0 has class label 0; ids start at 1 (0 is the background)")
    assert issues[("text_label_mismatch", "train.record record 2 (mismatch.jpg)")] == (
        "box 0 is 'b' (id 2 in the label map) but has label 1")
    assert issues[("box_lists_mismatch", "train.record record 4 (lengths.jpg)")] == (
        "list lengths differ: xmin 1, ymin 1, xmax 1, ymax 1, class/label 2, class/text 1")
    assert issues[("size_mismatch", "train.record record 5 (height.jpg)")] == (
        "image/height is 99, the decoded image is 32x24")
    assert issues[("split_leak", "test.record record 0 (leak.jpg)")] == (
        "same image bytes as train.record record 0 (good.jpg)")
    assert issues[("unused_class", "c")] == "class 'c' (id 3) has no boxes"
    assert ("corrupt_record", "val.record record 1") in issues
    assert ("decode_error", "train.record record 6 (cut.jpg)") in issues
    for kind in result["problems"]:
        assert kind in text
    assert "check: 12 error(s)" in text


# ---------------------------------------------------------------- label maps, CLI wiring

def test_label_map_text_round_trip_and_validation(tmp_path):
    path = tmp_path / "m.pbtxt"
    path.write_text(labelmap.to_text(labelmap.LabelMap.from_names(["cat", "it's \\ odd"])))
    assert labelmap.load(path).items == ((1, "cat"), (2, "it's \\ odd"))
    path.write_text('# comment\nitem {\n  name: "dog"\n  id: 2\n  display_name: "Dog"\n}\nitem { id: 1 name: "cat" }\n')
    assert labelmap.load(path).items == ((1, "cat"), (2, "dog"))
    items = labelmap.parse_items("item { id: 1 name: 'a' } item { id: 1 name: 'b' } item { id: -2 name: 'a' }", "m")
    assert labelmap.problems_of(items, "m") == [
        "m: id 1 is used twice ('a' and 'b')", "m: class 'a' has a negative id -2; ids start at 1",
        "m: class 'a' appears twice (ids 1 and -2)"]
    path.write_text("item { id: 1 nam: 'a' }")
    with pytest.raises(Exception, match="is not a TFOD label map"):
        labelmap.load(path)


def test_cli_is_reachable_and_usage_errors_are_one_line(tmp_path, capsys):
    out = subprocess.run([sys.executable, "-m", "tfodkit", "dataset", "convert", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--test_fraction" in out.stdout and "lisa" in out.stdout
    assert cli.main(["check", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'nothing'} not found (pass a records folder, a .record "
                                       f"file or a glob of them)\n")
    assert cli.main(["convert", "--format", "voc", "--images", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error: the following arguments are required: --output_dir "
                                       "(see: python -m tfodkit.dataset convert --help)\n")
    assert cli.main(["convert", "--format", "voc", "--images", str(tmp_path), "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --annotations is missing (--format voc needs --annotations PATH)\n"
