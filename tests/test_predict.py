"""predict.py on a real exported SSD (untrained, exported once per module with TFOD's exporter)."""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from tests.conftest import ROOT, run_python
from tests.untrained_model import LABELS, export_untrained_ssd
from tfodkit import predict

EXIF_ORIENTATION = 274


def _noise(rng: random.Random, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture with shapes on noise: the model answers differently for each."""
    from tfodkit.synthetic import draw_image

    image, _ = draw_image(rng, max(size))
    return image.resize(size).convert(mode)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("predict_model")
    export = export_untrained_ssd(root / "export")
    labels = root / "classes.pbtxt"
    labels.write_text(LABELS)
    return {"export": export, "labels": labels}


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


def make_odd_images(folder: Path) -> Path:
    """A corrupt JPEG, a greyscale JPEG, an RGBA PNG and an EXIF-rotated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    _noise(rng, (300, 220), "L").save(folder / "grey.jpg", quality=92)
    rgba = _noise(rng, (260, 260), "RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 80, 260))  # a transparent band on the left
    rgba.putalpha(alpha)
    rgba.save(folder / "rgba.png")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored 400x240, shown rotated 90 degrees clockwise: 240x400
    _noise(rng, (400, 240)).save(folder / "rotated.jpg", exif=exif, quality=92)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)) * 4)
    return folder


def as_seen(path: Path) -> np.ndarray:
    """What a person sees, built independently of predict.load_image: EXIF applied, alpha over white."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("RGB"))


def reference(signature, path: Path) -> dict:
    out = signature(input_tensor=tf.constant(as_seen(path)[np.newaxis]))
    n = int(out["num_detections"][0])
    return {"boxes": out["detection_boxes"][0, :n].numpy(), "scores": out["detection_scores"][0, :n].numpy(),
            "classes": out["detection_classes"][0, :n].numpy().astype(int)}


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


def test_json_boxes_agree_with_the_saved_model(folder_run, signature):
    assert_agrees_with_saved_model(folder_run["json"], signature)


def assert_agrees_with_saved_model(detections_json: dict, signature) -> None:
    """Every JSON entry's boxes, scores and classes are what the serving signature returns."""
    assert detections_json["images"]
    for entry in detections_json["images"]:
        ref = reference(signature, Path(entry["image"]))
        dets = entry["detections"]
        assert len(dets) == len(ref["scores"]) > 0
        order = np.argsort(-ref["scores"], kind="stable")
        norm = np.array([[d["box_normalized"][k] for k in ("ymin", "xmin", "ymax", "xmax")] for d in dets])
        np.testing.assert_allclose(norm, ref["boxes"][order], atol=2e-6)
        np.testing.assert_allclose([d["score"] for d in dets], ref["scores"][order], atol=2e-6)
        assert [d["class_id"] for d in dets] == ref["classes"][order].tolist()
        scale = np.array([entry["height"], entry["width"]] * 2)
        pixels = np.array([[d["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")] for d in dets])
        np.testing.assert_allclose(pixels, ref["boxes"][order] * scale, atol=0.01)
        assert {d["class_name"] for d in dets} <= {"circle", "square"}


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


def test_detector_takes_one_image_per_call(detector, odd_images):
    """TFOD's image_tensor signature is [1, H, W, 3]: a batch is split, each image gets its own answer."""
    assert detector.max_batch == 1
    a = as_seen(odd_images / "rotated.jpg")[:200, :200]
    b = as_seen(odd_images / "grey.jpg")[:200, :200]
    both = detector(np.stack([a, b]))
    assert len(both) == 2
    for got, single in zip(both, [detector(a[None])[0], detector(b[None])[0]], strict=True):
        np.testing.assert_allclose(got[0], single[0], atol=1e-6)


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


def test_missing_or_invalid_model_is_one_line(model, odd_images, tmp_path, capsys):
    args = ["--labels", str(model["labels"]), "--images", str(odd_images)]
    assert predict.main(["--model", str(tmp_path / "nope"), *args]) == 2
    assert "does not exist" in _one_line_error(capsys)
    assert predict.main(["--model", str(tmp_path), *args]) == 2
    assert "no SavedModel in" in _one_line_error(capsys)
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"not a protobuf" * 20)
    assert predict.main(["--model", str(tmp_path), *args]) == 2
    assert "cannot load the SavedModel" in _one_line_error(capsys)


def test_missing_or_invalid_label_map_is_one_line(model, odd_images, tmp_path, capsys):
    args = ["--model", str(model["export"]), "--images", str(odd_images)]
    assert predict.main([*args, "--labels", str(tmp_path / "nope.pbtxt")]) == 2
    assert "label map" in _one_line_error(capsys)
    (tmp_path / "bad.pbtxt").write_text("item {\n id: 1\n nam: 'cat'\n}\n")
    assert predict.main([*args, "--labels", str(tmp_path / "bad.pbtxt")]) == 2
    assert "is not valid: 3:" in _one_line_error(capsys)
    assert predict.main([*args, "--labels", str(model["labels"]), "--classes", "sqare"]) == 2
    assert "did you mean: square" in _one_line_error(capsys)
    assert predict.main([*args, "--labels", str(model["labels"]), "--min_confidence", "2"]) == 2
    _one_line_error(capsys)


def test_no_images_is_one_line(model, tmp_path, capsys):
    assert predict.main(["--model", str(model["export"]), "--labels", str(model["labels"]),
                         "--images", f"{tmp_path}/*.jpg, missing.png"]) == 2
    err = _one_line_error(capsys)
    assert "no image files match" in err and "missing.png: no such file" in err


# ---------------------------------------------------------------------------------------------- no model


def test_class_absent_from_label_map_is_class_n(tmp_path):
    labels = {1: "circle"}
    assert predict.label_text(1, 0.874, labels) == "circle: 87%"
    assert predict.label_text(7, 0.5, labels) == "class 7: 50%"
    detections = (np.array([[0.1, 0.1, 0.5, 0.6], [0.2, 0.3, 0.9, 0.9]]), np.array([1, 7]), np.array([0.9, 0.8]))
    records = predict.to_records(detections, 200, 100, predict.Options(labels=labels))
    assert [r["class_name"] for r in records] == ["circle", "class 7"]
    assert records[1]["box"] == {"xmin": 60.0, "ymin": 20.0, "xmax": 180.0, "ymax": 90.0}
    image = Image.new("RGB", (200, 100), (40, 40, 40))
    predict.draw_detections(image, records)
    assert np.asarray(image).std() > 0  # something was drawn
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
