"""YOLO and LabelMe input, records back to COCO JSON, shards by size.

The YOLO and LabelMe trees are made here from the raccoon subset's VOC files
(tests/data/raccoon) and must convert to the same examples as VOC itself.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import base64
import io
import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import decode_all, records_of
from tfodkit.dataset import cli, convert


def quiet_convert(*args, **kwargs) -> dict:
    return convert.run(*args, progress=False, out=io.StringIO(), workers=1, **kwargs)


def picture(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def voc_boxes(raccoon: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """image file name -> [(class, xmin, ymin, xmax, ymax)] in pixels, clipped to the image, from the VOC XML."""
    out = {}
    for xml in sorted((raccoon / "annotations").glob("*.xml")):
        root = ET.parse(xml).getroot()
        name = root.findtext("filename")
        with Image.open(raccoon / "images" / name) as im:
            width, height = im.size
        boxes = []
        for obj in root.iter("object"):
            b = obj.find("bndbox")
            x1, y1, x2, y2 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((obj.findtext("name"), max(0.0, x1), max(0.0, y1), min(width, x2), min(height, y2)))
        out[name] = boxes
    return out


def examples(folder: Path) -> dict[str, dict]:
    """image base name -> (sha256 of the image, sorted [(class text, pixel box)]) from the records."""
    out = {}
    for name, d in decode_all(records_of(folder)).items():
        ex = d["example"].features.feature
        height, width = d["image"].shape[:2]
        texts = [t.decode() for t in ex["image/object/class/text"].bytes_list.value]
        boxes = sorted((t, *(float(v) for v in (b[1] * width, b[0] * height, b[3] * width, b[2] * height)))
                       for t, b in zip(texts, d["boxes"], strict=True))
        out[Path(name).name] = {"sha": ex["image/key/sha256"].bytes_list.value[0], "boxes": boxes,
                                "classes": sorted(d["classes"])}
    return out


def assert_same(a: dict, b: dict, tol: float = 0.5) -> tuple[int, int]:
    assert sorted(a) == sorted(b)
    n_boxes = 0
    for name in a:
        assert a[name]["sha"] == b[name]["sha"], name
        assert a[name]["classes"] == b[name]["classes"], name
        assert len(a[name]["boxes"]) == len(b[name]["boxes"]), name
        for x, y in zip(a[name]["boxes"], b[name]["boxes"], strict=True):
            assert x[0] == y[0]
            assert max(abs(p - q) for p, q in zip(x[1:], y[1:], strict=True)) <= tol, (name, x, y)
            n_boxes += 1
    return len(a), n_boxes


def yolo_tree(raccoon: Path, root: Path, val: set[str] = frozenset()) -> Path:
    """Ultralytics layout: images/{train,val}, labels/{train,val}, data.yaml with names as {id: name}."""
    for name, boxes in voc_boxes(raccoon).items():
        sub = "val" if name in val else "train"
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(raccoon / "images" / name, root / "images" / sub / name)
        with Image.open(raccoon / "images" / name) as im:
            width, height = im.size
        lines = [f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                 f"{(y2 - y1) / height:.6f}" for _, x1, y1, x2, y2 in boxes]
        (root / "labels" / sub / Path(name).with_suffix(".txt")).write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: raccoon\n")
    return root


@pytest.fixture(scope="module")
def from_voc(raccoon, tmp_path_factory):
    out = tmp_path_factory.mktemp("voc") / "records"
    data = quiet_convert("voc", raccoon / "images", raccoon / "annotations", out)
    return out, data, examples(out)


def test_raccoon_as_yolo_gives_the_voc_examples(raccoon, from_voc, tmp_path, capsys):
    _, voc_data, voc = from_voc
    root = yolo_tree(raccoon, tmp_path / "yolo")
    out = tmp_path / "records"
    data = quiet_convert("yolo", root, None, out)  # the Ultralytics root: labels/ and data.yaml found
    yolo = examples(out)
    n_images, n_boxes = assert_same(voc, yolo)
    assert (n_images, n_boxes) == (voc_data["totals"]["written"]["images"], voc_data["totals"]["written"]["boxes"])
    assert (out / "classes.pbtxt").read_text() == "item {\n  id: 1\n  name: 'raccoon'\n}\n\n"  # YOLO 0 -> 1
    assert data["totals"]["adds_up"]
    assert data["problems"]["counts"] == voc_data["problems"]["counts"]  # no edge reported for 6-decimal rounding
    with capsys.disabled():
        print(f"\nraccoon YOLO vs VOC: {n_images} images, {n_boxes} boxes, {len(data['classes'])} class(es) equal")


def test_raccoon_as_labelme_gives_the_voc_examples(raccoon, from_voc, tmp_path):
    _, voc_data, voc = from_voc
    ann = tmp_path / "labelme" / "json"
    ann.mkdir(parents=True)
    for k, (name, boxes) in enumerate(sorted(voc_boxes(raccoon).items())):
        with Image.open(raccoon / "images" / name) as im:
            width, height = im.size
        shapes = []
        for j, (cls, x1, y1, x2, y2) in enumerate(boxes):
            if (k + j) % 2:  # a polygon whose bounding box is the VOC box
                points = [[x1, (y1 + y2) / 2], [(x1 + x2) / 2, y1], [x2, y2], [x1, y2]]
                shapes.append({"label": cls, "points": points, "shape_type": "polygon"})
            else:
                shapes.append({"label": cls, "points": [[x2, y2], [x1, y1]], "shape_type": "rectangle"})
        doc = {"version": "5.4.1", "shapes": shapes, "imagePath": f"../images/{name}", "imageData": None,
               "imageWidth": width, "imageHeight": height}
        if k == 0:  # embedded: the image exists only as imageData
            doc.update(imagePath=name, imageData=base64.b64encode((raccoon / "images" / name).read_bytes()).decode())
        else:
            (tmp_path / "labelme" / "images").mkdir(exist_ok=True)
            shutil.copy(raccoon / "images" / name, tmp_path / "labelme" / "images" / name)
        (ann / Path(name).with_suffix(".json")).write_text(json.dumps(doc))
    out = tmp_path / "records"
    data = quiet_convert("labelme", None, ann, out)
    assert data["problems"]["counts"] == voc_data["problems"]["counts"]
    assert Path(data["images"]) == tmp_path / "labelme"  # no --images: the folder of the JSON and the images
    assert {n for n in decode_all(records_of(out))} == {
        f"json/{n}" if k == 0 else f"images/{n}" for k, n in enumerate(sorted(voc_boxes(raccoon)))}
    assert data["totals"]["written"] == voc_data["totals"]["written"]
    assert_same(voc, examples(out))


def test_ultralytics_splits_are_kept_with_split_from_folders(tmp_path):
    root = tmp_path / "yolo"
    for sub, stems in (("train", "abcde"), ("val", "fg")):
        for i, stem in enumerate(stems):
            picture(root / "images" / sub / f"{stem}.png", (40, 30), seed=ord(stem) + i)
            (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
            (root / "labels" / sub / f"{stem}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.4\n")
    (root / "labels" / "classes.txt").write_text("cat\ndog\n")
    kept = quiet_convert("yolo", root / "images", root / "labels", tmp_path / "kept", split_from_folders=True,
                         test_fraction=0.5)
    decoded = decode_all(records_of(tmp_path / "kept"))
    assert {n: d["split"] for n, d in decoded.items()} == {
        **{f"train/{s}.png": "training" for s in "abcde"}, **{f"val/{s}.png": "testing" for s in "fg"}}
    assert kept["split_from_folders"] and kept["test_fraction"] is None
    assert {d["classes"][0] for d in decoded.values()} == {1, 2}  # cat, dog: YOLO 0, 1 -> 1, 2
    for images, labels in ((root, None), (root, root / "labels"), (root / "images", None)):  # the same tree
        same = quiet_convert("yolo", images, labels, tmp_path / "same", split_from_folders=True)
        assert (same["splits"]["training"]["images"], same["splits"]["testing"]["images"]) == (5, 2)
        assert same["totals"]["written"] == {"images": 7, "boxes": 7} and not same["problems"]["counts"]
    today = quiet_convert("yolo", root / "images", root / "labels", tmp_path / "today", test_fraction=0.5)
    assert (today["splits"]["training"]["images"], today["splits"]["testing"]["images"]) != (5, 2)
    assert today["splits"]["testing"]["images"] == 4  # round(0.5 * 7), the usual split


def test_yolo_problems_each_get_their_line(tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    for i, stem in enumerate(("a", "b", "background")):
        picture(images / f"{stem}.jpg", (50, 40), seed=i)
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5\nx 0.5 0.5 0.2 0.2\n0 25 20 10 10\n")
    (labels / "b.txt").write_text("7 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.2 0.2\n")
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("names: [cat, dog]\n")
    code = cli.main(["convert", "--format", "yolo", "--images", str(images), "--annotations", str(labels),
                     "--output_dir", str(tmp_path / "out"), "--workers", "1", "--no_progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    data = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert data["problems"]["counts"] == {"missing_image": 1, "bad_annotation": 2, "unknown_class": 1,
                                          "not_normalized": 1}
    assert data["totals"] == {"input": {"images": 4, "boxes": 7}, "written": {"images": 3, "boxes": 2},
                              "dropped": {"images": {"missing_image": 1},
                                          "boxes": {"missing_image": 1, "bad_annotation": 2,
                                                    "unknown_class": 1, "not_normalized": 1}},
                              "adds_up": True}
    for line in ("a.txt line 2]: bad line '0 0.5 0.5': 3 values, not 5",
                 "a.txt line 3]: bad line 'x 0.5 0.5 0.2 0.2': class id 'x' is not a whole number",
                 "a.txt line 4]: cx=25, cy=20, w=10, h=10 outside [0, 1]",
                 "b.txt line 1]: class id 7 is not in data.yaml (ids 0..1); box dropped",
                 "orphan.jpg [orphan.txt]: no image named orphan.*"):
        assert sum(line in row for row in stdout.splitlines()) == 1, line
    assert data["images_without_label_file"] == 1
    assert "1 image(s) without a label file: background images" in stdout
    assert data["splits"]["training"]["images_without_boxes"] + data["splits"]["testing"]["images_without_boxes"] == 1


def test_yolo_classes_are_required_and_checked(tmp_path, capsys):
    picture(tmp_path / "images" / "a.jpg", (20, 20))
    (tmp_path / "labels").mkdir()
    args = ["convert", "--format", "yolo", "--images", str(tmp_path / "images"), "--annotations",
            str(tmp_path / "labels"), "--output_dir", str(tmp_path / "out")]
    assert cli.main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "data.yaml").write_text("names: {0: cat, 2: dog}\n")
    assert cli.main(args) == 2
    assert "not 0..1" in capsys.readouterr().err


def test_labelme_problems_name_the_skipped_shapes(tmp_path, capsys):
    picture(tmp_path / "a.jpg", (60, 40))
    shapes = [{"label": "cat", "points": [[1, 2], [30, 20]], "shape_type": "rectangle"},
              {"label": "cat", "points": [[10, 10], [15, 15]], "shape_type": "circle"},
              {"label": "cat", "points": [[10, 10]], "shape_type": "point"},
              {"label": "cat", "points": [[1, 1], [9, 9]], "shape_type": "line"},
              {"label": "dog", "points": [[1, 1], [9, 9]], "shape_type": "polygon"}]
    (tmp_path / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.jpg"}))
    (tmp_path / "broken.json").write_text("{not json")
    code = cli.main(["convert", "--format", "labelme", "--annotations", str(tmp_path), "--output_dir",
                     str(tmp_path / "out"), "--workers", "1", "--no_progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    data = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert data["problems"]["counts"] == {"bad_annotation": 2, "unsupported_shape": 3}
    assert data["totals"]["adds_up"] and data["totals"]["written"] == {"images": 1, "boxes": 1}
    for line in ("a.json shape 2]: circle shape 'cat' skipped", "a.json shape 3]: point shape 'cat' skipped",
                 "a.json shape 4]: line shape 'cat' skipped", "a.json shape 5]: bad polygon 'dog': 2 point(s)",
                 "[broken.json]: cannot read broken.json"):
        assert sum(line in row for row in stdout.splitlines()) == 1, line


def test_to_coco_round_trips_voc(raccoon, from_voc, tmp_path, capsys):
    records, data, _ = from_voc
    code = cli.main(["to-coco", str(records), "--output", str(tmp_path / "coco.json"), "--images_dir",
                     str(tmp_path / "images")])
    assert code == 0, capsys.readouterr()
    truth = voc_boxes(raccoon)
    seen = {}
    for split in ("training", "testing"):
        coco = json.loads((tmp_path / f"coco-{split}.json").read_text())
        assert coco["categories"] == [{"id": 1, "name": "raccoon", "supercategory": "none"}]
        assert len(coco["images"]) == data["splits"][split]["images"]
        by_image = {im["id"]: im for im in coco["images"]}
        for im in coco["images"]:
            assert (tmp_path / "images" / im["file_name"]).read_bytes() == \
                (raccoon / "images" / im["file_name"]).read_bytes()
            seen[im["file_name"]] = []
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            seen[by_image[a["image_id"]]["file_name"]].append(("raccoon", x, y, x + w, y + h))
    assert sorted(seen) == sorted(truth)
    for name, boxes in truth.items():
        got = sorted(seen[name])
        assert len(got) == len(boxes)
        for a, b in zip(got, sorted(boxes), strict=True):
            assert a[0] == b[0] and max(abs(p - q) for p, q in zip(a[1:], b[1:], strict=True)) <= 0.5, (name, a, b)


def test_shards_auto_by_size(raccoon, from_voc, tmp_path, capsys):
    _, data, _ = from_voc
    assert data["shards"]["requested"] == "auto" and (data["shards"]["training"], data["shards"]["testing"]) == (1, 1)
    assert data["files"]["training"] == ["training.record"]
    size_mb = 0.25
    code = cli.main(["convert", "--format", "voc", "--images", str(raccoon / "images"), "--annotations",
                     str(raccoon / "annotations"), "--output_dir", str(tmp_path / "out"), "--shard_size_mb",
                     str(size_mb), "--workers", "1", "--no_progress"])
    assert code == 0, capsys.readouterr()
    big = json.loads((tmp_path / "out" / "dataset.json").read_text())
    for split in ("training", "testing"):
        want = max(1, math.ceil(big["shards"]["image_bytes"][split] / (size_mb * 1024 * 1024)))
        assert big["shards"][split] == want == len(big["files"][split])
        assert len(list((tmp_path / "out").glob(f"{split}-*-of-{want:05d}.record"))) == want
    assert big["shards"]["training"] > 1
    assert cli.main(["to-coco", str(tmp_path / "out"), "--output", str(tmp_path / "c.json")]) == 0  # all shards
    for split in ("training", "testing"):
        coco = json.loads((tmp_path / f"c-{split}.json").read_text())
        assert (len(coco["images"]), len(coco["annotations"])) == (big["splits"][split]["images"],
                                                                   big["splits"][split]["boxes"])
    assert big["shards"]["image_bytes"]["training"] + big["shards"]["image_bytes"]["testing"] == \
        sum(p.stat().st_size for p in (raccoon / "images").iterdir())
    assert cli.main(["convert", "--format", "voc", "--images", str(raccoon / "images"), "--annotations",
                     str(raccoon / "annotations"), "--output_dir", str(tmp_path / "n"), "--shards", "2",
                     "--shard_size_mb", "1"]) == 2  # --shards N sets the count: both is a usage error
    assert cli.main(["convert", "--format", "voc", "--images", str(raccoon / "images"), "--annotations",
                     str(raccoon / "annotations"), "--output_dir", str(tmp_path / "n"), "--shards", "x"]) == 2


def test_a_duplicate_across_the_folders_split_is_reported_and_an_empty_make_variable_is_not_given(tmp_path, capsys):
    root = tmp_path / "yolo"
    picture(root / "images" / "train" / "a.png", (30, 20), seed=1)
    picture(root / "images" / "train" / "b.png", (30, 20), seed=2)
    (root / "images" / "val").mkdir(parents=True)
    shutil.copy(root / "images" / "train" / "a.png", root / "images" / "val" / "c.png")
    (root / "classes.txt").write_text("cat\n")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    # make dataset passes --annotations "" when ANNOTATIONS is left empty: the Ultralytics root's labels/ is used
    assert cli.main(["convert", "--format", "yolo", "--images", str(root), "--annotations", "", "--output_dir",
                     str(tmp_path / "out"), "--split_from_folders", "--workers", "1", "--no_progress"]) == 0
    stdout = capsys.readouterr().out
    assert ("images/val/c.png [val/c (no label file: background)]: same bytes as images/train/a.png [train/a.txt]; "
            "both kept, images/train/a.png in training, images/val/c.png in testing (the folders' split); "
            "annotated differently (0 vs 1 boxes)") in stdout.splitlines()[-1]
