"""predict.py on a real exported SSD (untrained, exported once per module with TFOD's exporter).

The tests that need that model are marked slow (the export takes a minute on 2
cores); the others check arguments, drawing, image loading and the pipeline
with a stand-in detect function.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, run_python
from tests.support import as_seen, assert_agrees_with_saved_model, make_odd_images, reference
from tests.untrained_model import LABELS, export_untrained_ssd
from tfodkit import predict


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("predict_model")
    export = export_untrained_ssd(root / "export")
    labels = root / "classes.pbtxt"
    labels.write_text(LABELS)
    return {"export": export, "labels": labels}


@pytest.fixture(scope="module")
def unloaded(tmp_path_factory) -> dict:
    """An export folder whose saved_model.pb is never loaded, and the label map: for errors found before loading."""
    root = tmp_path_factory.mktemp("unloaded_model")
    (root / "export" / "saved_model").mkdir(parents=True)
    (root / "export" / "saved_model" / "saved_model.pb").write_bytes(b"loading this would fail")
    (root / "classes.pbtxt").write_text(LABELS)
    return {"export": root / "export", "labels": root / "classes.pbtxt"}


@pytest.fixture(scope="module")
def detector(model) -> predict.Detector:
    return predict.Detector(model["export"])


@pytest.fixture(scope="module")
def signature(detector):
    """The SavedModel's serving signature, called directly by the tests (loading twice takes seconds)."""
    return detector.model.signatures["serving_default"]


@pytest.fixture
def loaded_once(monkeypatch, detector):
    """main() reuses the module's loaded model (loading takes seconds) for the same export."""
    real = predict.Detector

    def make(path: Path):
        return detector if predict.find_saved_model(path).resolve() == detector.path.resolve() else real(path)

    monkeypatch.setattr(predict, "Detector", make)


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory) -> Path:
    return make_odd_images(tmp_path_factory.mktemp("odd_images"))


@pytest.fixture(scope="module")
def folder_run(model, odd_images, detector, tmp_path_factory):
    """predict.py over the odd folder, min_confidence 0, pictures + JSON."""
    out = tmp_path_factory.mktemp("odd_out")
    mp = pytest.MonkeyPatch()
    mp.setattr(predict, "Detector", lambda path: detector)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as stdout:
        status = predict.main(["--model", str(model["export"]), "--labels", str(model["labels"]),
                               "--images", str(odd_images), "--output_dir", str(out), "--min_confidence", "0",
                               "--json"])
    mp.undo()
    return {"status": status, "stderr": err.getvalue(), "stdout": stdout.getvalue(), "out": out,
            "json": json.loads((out / "result_detections.json").read_text())}


@pytest.mark.slow
def test_folder_of_odd_images(folder_run, odd_images):
    assert folder_run["status"] == 1
    assert "corrupt.jpg" in folder_run["stderr"]
    out = folder_run["out"]
    good = {"grey", "rgba", "rotated"}
    assert {p.name for p in out.iterdir()} == {f"result_{n}.jpg" for n in good} | {"result_detections.json"}
    entries = {Path(e["image"]).stem: e for e in folder_run["json"]["images"]}
    assert set(entries) == good
    for name, entry in entries.items():
        assert entry["detections"], name
        with Image.open(entry["output"]) as picture:
            assert picture.size == (entry["width"], entry["height"]), name
    assert (entries["rotated"]["width"], entries["rotated"]["height"]) == (240, 400)  # as a person sees it
    assert [Path(e["image"]).name for e in folder_run["json"]["errors"]] == ["corrupt.jpg"]
    assert folder_run["json"]["summary"]["images"] == 3
    assert "3 images" in folder_run["stdout"] and "images/s" in folder_run["stdout"]


@pytest.mark.slow
def test_json_boxes_agree_with_the_saved_model(folder_run, signature):
    assert_agrees_with_saved_model(folder_run["json"], signature)


@pytest.mark.slow
def test_filters_min_confidence_classes_max_detections(model, odd_images, signature, loaded_once, tmp_path, capsys):
    images = [odd_images / "grey.jpg", odd_images / "rotated.jpg"]
    refs = [reference(signature, p) for p in images]
    threshold = float(np.median(np.concatenate([r["scores"] for r in refs])))
    base = ["--model", str(model["export"]), "--labels", str(model["labels"]),
            "--images", ", ".join(str(p) for p in images), "--output_dir", str(tmp_path)]
    assert predict.main([*base, "--min_confidence", str(threshold), "--classes", "square",
                         "--json", str(tmp_path / "a.json"), "--output_file_prefix", "a"]) == 0
    entries = json.loads((tmp_path / "a.json").read_text())["images"]
    for entry, ref in zip(entries, refs, strict=True):
        want = int(np.sum((ref["scores"] >= threshold) & (ref["classes"] == 2)))
        assert len(entry["detections"]) == want
        assert all(d["class_name"] == "square" and d["score"] >= threshold for d in entry["detections"])
    assert predict.main([*base, "--min_confidence", "0", "--max_detections", "2", "--format", "png",
                         "--json", str(tmp_path / "b.json"), "--output_file_prefix", "b"]) == 0
    entries = json.loads((tmp_path / "b.json").read_text())["images"]
    for entry, ref in zip(entries, refs, strict=True):
        top = np.sort(ref["scores"])[::-1][:2]
        np.testing.assert_allclose([d["score"] for d in entry["detections"]], top, atol=2e-6)
    assert sorted(p.name for p in tmp_path.glob("b_*")) == ["b_grey.png", "b_rotated.png"]
    assert not list(tmp_path.glob(".*tmp"))  # every temporary file renamed into place
    capsys.readouterr()


@pytest.mark.slow
def test_cli_shim_seed_flags_and_a_missing_image(model, odd_images, tmp_path):
    """The top-level predict.py in a fresh interpreter: the seed's flags, a missing file named, exit 1."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), "--model", str(model["export"] / "saved_model"),
         "--labels", str(model["labels"]), "--images", f"{odd_images / 'grey.jpg'}, nope.jpg",
         "--output_dir", str(tmp_path / "r"), "--output_file_prefix", "x", "--min_confidence", "0.3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "nope.jpg: no such file" in proc.stderr
    assert (tmp_path / "r" / "x_grey.jpg").is_file()
    assert "1 images" in proc.stdout


@pytest.mark.slow
def test_detector_takes_one_image_per_call(detector, odd_images):
    """TFOD's image_tensor signature is [1, H, W, 3]: a batch is split, each image gets its own answer."""
    assert detector.max_batch == 1
    a = as_seen(odd_images / "rotated.jpg")[:200, :200]
    b = as_seen(odd_images / "grey.jpg")[:200, :200]
    both = detector(np.stack([a, b]))
    assert len(both) == 2
    for got, single in zip(both, [detector(a[None])[0], detector(b[None])[0]], strict=True):
        np.testing.assert_allclose(got[0], single[0], atol=1e-6)


@pytest.mark.slow
def test_label_map_beside_the_export_is_the_default(model, odd_images, loaded_once, tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "saved_model").symlink_to(model["export"] / "saved_model")
    args = ["--model", str(export), "--images", str(odd_images / "grey.jpg"), "--output_dir", str(tmp_path),
            "--min_confidence", "0", "--json", str(tmp_path / "d.json")]
    assert predict.main(args) == 2
    assert "no --labels given and no label_map.pbtxt" in _one_line_error(capsys)
    (export / "label_map.pbtxt").write_text("item {\n  id: 2\n  name: 'box'\n}\n")  # as tfodkit export writes
    assert predict.main(args) == 0
    detections = json.loads((tmp_path / "d.json").read_text())["images"][0]["detections"]
    assert detections and all(d["class_name"] == {1: "class 1", 2: "box"}[d["class_id"]] for d in detections)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_missing_or_invalid_model_is_one_line(unloaded, odd_images, tmp_path, capsys):
    args = ["--labels", str(unloaded["labels"]), "--images", str(odd_images)]
    assert predict.main(["--model", str(tmp_path / "nope"), *args]) == 2
    assert "does not exist" in _one_line_error(capsys)
    assert predict.main(["--model", str(tmp_path), *args]) == 2
    assert "no SavedModel in" in _one_line_error(capsys)
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"not a protobuf" * 20)
    assert predict.main(["--model", str(tmp_path), *args]) == 2
    assert "cannot load the SavedModel" in _one_line_error(capsys)


def test_missing_or_invalid_label_map_is_one_line(unloaded, odd_images, tmp_path, capsys):
    """All found before the model is loaded (``unloaded`` would fail to load)."""
    args = ["--model", str(unloaded["export"]), "--images", str(odd_images)]
    assert predict.main([*args, "--labels", str(tmp_path / "nope.pbtxt")]) == 2
    assert "label map" in _one_line_error(capsys)
    (tmp_path / "bad.pbtxt").write_text("item {\n id: 1\n nam: 'cat'\n}\n")
    assert predict.main([*args, "--labels", str(tmp_path / "bad.pbtxt")]) == 2
    assert "is not a TFOD label map: 3:" in _one_line_error(capsys)
    assert predict.main([*args, "--labels", str(unloaded["labels"]), "--classes", "sqare"]) == 2
    assert "did you mean: square" in _one_line_error(capsys)
    assert predict.main([*args, "--labels", str(unloaded["labels"]), "--min_confidence", "2"]) == 2
    _one_line_error(capsys)


def test_no_images_is_one_line(unloaded, tmp_path, capsys):
    assert predict.main(["--model", str(unloaded["export"]), "--labels", str(unloaded["labels"]),
                         "--images", f"{tmp_path}/*.jpg, missing.png"]) == 2
    err = _one_line_error(capsys)
    assert "no image files match" in err and "missing.png: no such file" in err


# ---------------------------------------------------------------------------------------------- no model


def _ink(pixels: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """``pixels`` cropped to those that are not ``background``."""
    ys, xs = np.nonzero(~(pixels == background).all(-1))
    return pixels[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def _label_above(image: Image.Image, det: dict) -> np.ndarray:
    """The text drawn in the label patch above ``det``'s box: the patch is the only class colour up there."""
    colour = predict.class_colour(det["class_id"])
    above = np.asarray(image)[: int(det["box"]["ymin"]) - 1]  # the rows above the box and its rim
    ys, xs = np.nonzero((above == colour).all(-1))
    return _ink(above[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1], colour)


def _reads(image: Image.Image, det: dict, text: str) -> bool:
    """Whether the label above ``det``'s box is ``text``, in Pillow's default font at some size, pixel for pixel."""
    from PIL import ImageDraw, ImageFont

    drawn, colour = _label_above(image, det), predict.class_colour(det["class_id"])
    for size in range(8, 48):
        canvas = Image.new("RGB", (size * len(text) + 8, 2 * size + 8), colour)
        ImageDraw.Draw(canvas).text((4, 4), text, fill=predict.text_colour(colour),
                                    font=ImageFont.load_default(size=size))
        reference_text = _ink(np.asarray(canvas), colour)
        if reference_text.shape == drawn.shape and (reference_text == drawn).all():
            return True
    return False


@pytest.mark.parametrize("size", [(200, 100), (1200, 900)])
def test_each_box_is_labelled_with_its_class_name_and_score(size):
    """What a person reads on the picture: "name: 87%", a class missing from the label map as "class N"."""
    labels = {1: "circle"}
    width, height = size
    # integral pixel corners (0.25 * 200, ...), one box per picture so no label covers another
    boxes = np.array([[0.75, 0.25, 0.95, 0.6], [0.75, 0.3, 0.9, 0.9]])
    for i, (class_id, score, text) in enumerate([(1, 0.874, "circle: 87%"), (7, 0.5, "class 7: 50%")]):
        records = predict.to_records((boxes[i:i + 1], np.array([class_id]), np.array([score])), width, height,
                                     predict.Options(labels=labels, min_confidence=0))
        assert [r["class_name"] for r in records] == [text.split(":")[0]]
        image = Image.new("RGB", size, (40, 40, 40))
        predict.draw_detections(image, records)
        assert _reads(image, records[0], text), text
        assert not _reads(image, records[0], text.replace("%", "")) and not _reads(image, records[0], "circle")
        box = records[0]["box"]  # the box itself, in the class's colour
        assert tuple(np.asarray(image)[round(box["ymax"]), round((box["xmin"] + box["xmax"]) / 2)]) == \
            predict.class_colour(class_id)


def test_class_absent_from_label_map_is_class_n():
    labels = {1: "circle"}
    detections = (np.array([[0.1, 0.1, 0.5, 0.6], [0.2, 0.3, 0.9, 0.9]]), np.array([1, 7]), np.array([0.9, 0.8]))
    records = predict.to_records(detections, 200, 100, predict.Options(labels=labels))
    assert [r["class_name"] for r in records] == ["circle", "class 7"]
    assert records[1]["box"] == {"xmin": 60.0, "ymin": 20.0, "xmax": 180.0, "ymax": 90.0}
    assert predict.parse_classes("class 7, circle", labels) == {1, 7}


def test_colours_distinct_and_text_readable():
    colours = [predict.class_colour(i) for i in range(1, 21)]
    assert len(set(colours)) == 20
    for c in colours:
        text = predict.text_colour(c)
        contrast = abs(sum(c) / 3 - sum(text) / 3)
        assert contrast > 60, (c, text)


def test_load_image_modes(tmp_path):
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(tmp_path / "deep.png")
    palette = Image.new("P", (32, 32), 0)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    for name in ("deep.png", "palette.png", "cmyk.jpg"):
        image = predict.load_image(tmp_path / name)
        assert image.mode == "RGB", name
    assert np.asarray(predict.load_image(tmp_path / "deep.png")).max() > 200  # 16-bit scaled, not clipped to 255


def test_expand_images_and_output_names(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.jpg", "a/y.PNG", "a/notes.txt", "a/.hidden.jpg", "z.jpg", "z.png", "q, r.jpg"):
        (tmp_path / name).write_bytes(b"")
    found, problems = predict.expand_images([f"{tmp_path / 'a'}, {tmp_path}/*.jpg, {tmp_path / 'a/x.jpg'}",
                                             str(tmp_path / "q, r.jpg"), f"{tmp_path}/nothing*.gif"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/x.jpg", "a/y.PNG", "q, r.jpg", "z.jpg"]
    assert problems == [(f"{tmp_path}/nothing*.gif", "no image files match this pattern")]
    jobs = predict.plan_outputs([tmp_path / "z.jpg", tmp_path / "z.png", tmp_path / "a/z.jpg"], tmp_path, "", "jpg")
    assert [j.dst.name for j in jobs] == ["z-2.jpg", "z-3.jpg", "z-4.jpg"]  # never overwrites an input


MEMORY_PROBE = """
import os, resource
from pathlib import Path
import numpy as np
from tfodkit import predict
folder, count, out = Path(os.environ["PROBE_IN"]), int(os.environ["PROBE_COUNT"]), Path(os.environ["PROBE_OUT"])
images = sorted(folder.glob("*.png"))[:count]
jobs = predict.plan_outputs(images, out, "r", "jpg")
det = (np.array([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.5]]), np.array([1, 2]), np.array([0.9, 0.6]))
stream = predict.JsonStream(out / "d.json", {"model": "stub"})
summary = predict.run(jobs, lambda batch: [det] * len(batch), predict.Options(labels={1: "a"}, workers=2),
                      stream, progress=False)
stream.close(summary.failed, {})
assert summary.images == count, summary
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's, inherited across fork and exec)
status = Path("/proc/self/status")
hwm = [line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:")] \
    if status.exists() else [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
print(hwm[0])
"""


def test_memory_stays_flat(tmp_path):
    """2000 images need no more memory than 200 (all held at once would be ~100 MB more)."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tile = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    for i in range(2000):
        tile.save(folder / f"{i:04d}.png", compress_level=0)
    peaks = {}
    for count in (200, 2000):
        out = tmp_path / f"out{count}"
        out.mkdir()
        proc = run_python(MEMORY_PROBE, env={"PROBE_IN": str(folder), "PROBE_COUNT": str(count),
                                             "PROBE_OUT": str(out)})
        assert proc.returncode == 0, proc.stderr
        peaks[count] = int(proc.stdout.split()[-1]) / 1024  # KiB -> MiB
        assert len(list(out.glob("r_*.jpg"))) == count
        assert len(json.loads((out / "d.json").read_text())["images"]) == count
    assert peaks[2000] - peaks[200] < 20, peaks
    print(f"peak RSS MiB: {peaks}", file=sys.stderr)


def test_batches_and_concurrent_calls_keep_order(tmp_path):
    """With a model that takes batches: consecutive same-size images share a call; order is kept."""
    sizes = [(40, 30)] * 4 + [(50, 50)] * 2 + [(40, 30)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (i * 30, 0, 0)).save(paths[-1])
    (tmp_path / "3.png").write_bytes(b"broken")  # a failure inside the first run of same-size images
    calls = []

    def detect(batch):
        calls.append(batch.shape)
        return [(np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([1]), np.array([b[0, 0, 0] / 255])) for b in batch]

    out = tmp_path / "out"
    out.mkdir()
    stream = predict.JsonStream(out / "d.json", {"model": "stub"})
    summary = predict.run(predict.plan_outputs(paths, out, "r", "png"), detect,
                          predict.Options(labels={1: "a"}, min_confidence=0, batch_size=2, inflight=1), stream,
                          progress=False, report=lambda text: None)
    stream.close(summary.failed, {})
    assert calls == [(2, 30, 40, 3), (1, 30, 40, 3), (2, 50, 50, 3), (1, 30, 40, 3)]
    entries = json.loads((out / "d.json").read_text())["images"]
    assert [Path(e["image"]).name for e in entries] == ["0.png", "1.png", "2.png", "4.png", "5.png", "6.png"]
    assert [round(e["detections"][0]["score"] * 255 / 30) for e in entries] == [0, 1, 2, 4, 5, 6]
    assert [f["image"] for f in summary.failed] == [str(tmp_path / "3.png")]

    # three model calls at once, one image each: the same results, in the same order
    stream = predict.JsonStream(out / "e.json", {"model": "stub"})
    summary = predict.run(predict.plan_outputs(paths, out, "s", "png"), detect,
                          predict.Options(labels={1: "a"}, min_confidence=0, inflight=3), stream, progress=False,
                          report=lambda text: None)
    stream.close(summary.failed, {})
    assert json.loads((out / "e.json").read_text())["images"] == [
        {**e, "output": e["output"].replace("/r_", "/s_")} for e in entries]


def test_images_may_be_repeated(tmp_path):
    from tfodkit.predict import parse_args

    args = parse_args(["--model", str(tmp_path), "--images", "a.jpg, b.jpg", "--images", "c/"])
    assert args.images == ["a.jpg, b.jpg", "c/"]
