"""Each compat shim works, and each is needed: without it the same check fails.

"Without it" runs in a fresh interpreter with TFODKIT_COMPAT_DISABLE naming the
shim, so the in-process checks and the counter-checks exercise the same code.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_python

GREY = "raccoon-150.jpg"  # a greyscale JPEG (tests/data/raccoon)
COLOUR = "raccoon-1.jpg"


def _example(image_path, xml_path) -> bytes:
    """A TFOD-style tf.train.Example for one VOC-annotated raccoon image."""
    root = ET.parse(xml_path).getroot()
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    objs = root.findall("object")

    def floats(tag, scale):
        return tf.train.Feature(float_list=tf.train.FloatList(
            value=[float(o.findtext(f"bndbox/{tag}")) / scale for o in objs]))

    def bytes_(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    feature = {
        "image/encoded": bytes_(image_path.read_bytes()),
        "image/format": bytes_(b"jpeg"),
        "image/filename": bytes_(image_path.name.encode()),
        "image/source_id": bytes_(image_path.name.encode()),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        "image/object/bbox/xmin": floats("xmin", width),
        "image/object/bbox/xmax": floats("xmax", width),
        "image/object/bbox/ymin": floats("ymin", height),
        "image/object/bbox/ymax": floats("ymax", height),
        "image/object/class/text": bytes_(*[b"raccoon"] * len(objs)),
        "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * len(objs))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def raccoon_record(raccoon, tmp_path_factory):
    path = tmp_path_factory.mktemp("records") / "raccoon.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name in (COLOUR, GREY):
            writer.write(_example(raccoon / "images" / name, raccoon / "annotations" / name.replace(".jpg", ".xml")))
    return path


DECODE = """
import tfodkit.compat
import tensorflow as tf
from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder
decoder = TfExampleDecoder()
for serialized in tf.data.TFRecordDataset({path!r}):
    d = decoder.decode(serialized)
    print(d["image"].shape, d["groundtruth_boxes"].shape[0])
"""


def test_tfod_decoder_reads_real_jpegs_including_greyscale(raccoon, raccoon_record):
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder
    from PIL import Image

    decoder = TfExampleDecoder()
    decoded = [decoder.decode(s) for s in tf.data.TFRecordDataset(str(raccoon_record))]
    assert len(decoded) == 2
    for name, d in zip((COLOUR, GREY), decoded, strict=True):
        with Image.open(raccoon / "images" / name) as im:
            width, height = im.size
            mode = im.mode
        image = d[fields.InputDataFields.image].numpy()
        assert image.shape == (height, width, 3), name  # greyscale comes out as 3 channels
        assert d[fields.InputDataFields.groundtruth_boxes].shape[0] >= 1
        assert d[fields.InputDataFields.groundtruth_classes].numpy().tolist()[0] == 1
        if mode == "L":
            assert np.array_equal(image[..., 0], image[..., 1])
    assert Image.open(raccoon / "images" / GREY).mode == "L"


def test_decoder_fails_without_control_flow_shim(raccoon_record):
    out = run_python(DECODE.format(path=str(raccoon_record)), env={"TFODKIT_COMPAT_DISABLE": "control_flow_ops"})
    assert out.returncode != 0
    assert "has no attribute 'case'" in out.stderr


IMPORT_TRAIN_PATH = "import tfodkit.compat\nimport object_detection.model_lib_v2\nprint('ok')"


KERAS = "import tfodkit.compat\nimport tensorflow as tf\nprint(tf.keras.__name__.split('.')[0])"


def test_tf_keras_is_keras_2():
    out = run_python(KERAS, env={"TF_USE_LEGACY_KERAS": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tf_keras"
    assert tf.keras.__name__.startswith("tf_keras")


def test_without_legacy_keras_tf_keras_is_keras_3():
    out = run_python(KERAS, env={"TFODKIT_COMPAT_DISABLE": "legacy_keras", "TF_USE_LEGACY_KERAS": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "keras"


def test_compat_refuses_tensorflow_imported_first():
    out = run_python("import tensorflow\nimport tfodkit.compat", env={"TF_USE_LEGACY_KERAS": ""})
    assert out.returncode != 0
    assert "import tfodkit.compat first" in out.stderr


def test_rgb_to_lab_matches_reference_values():
    rgb = tf.constant([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    lab = tfodkit.compat.rgb_to_lab(rgb).numpy()
    # Reference L*a*b* (D65) for sRGB white, red, black and 50 % grey.
    expected = np.array([[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [0.0, 0.0, 0.0], [53.39, 0.0, 0.0]])
    np.testing.assert_allclose(lab, expected, atol=0.1)


DEEPMAC = ("import tfodkit.compat\nfrom object_detection.meta_architectures import deepmac_meta_arch as d\n"
           "import tensorflow as tf\nprint(d.tfio.experimental.color.rgb_to_lab(tf.ones([1, 2, 2, 3])).shape)")


DRAW = """
import tfodkit.compat
import numpy as np
from object_detection.utils import visualization_utils as vu
labelled, plain = np.zeros((120, 160, 3), dtype=np.uint8), np.zeros((120, 160, 3), dtype=np.uint8)
vu.draw_bounding_box_on_image_array(labelled, 0.2, 0.2, 0.8, 0.8, color="red", display_str_list=["raccoon: 97%"])
vu.draw_bounding_box_on_image_array(plain, 0.2, 0.2, 0.8, 0.8, color="red", display_str_list=[])
print(int(plain.sum() > 0), int((labelled != plain).any()))  # the box, and the label (sized with getsize) on it
"""


def test_unknown_shim_name_is_rejected():
    out = run_python("import tfodkit.compat", env={"TFODKIT_COMPAT_DISABLE": "nonsense"})
    assert out.returncode != 0
    assert "unknown shims ['nonsense']" in out.stderr


def test_category_stats_equal_cocoeval_restricted_to_each_category():
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, 5)]
    anns, dets, n = [], [], 0
    for img in images:
        for cat, (x, y) in ((1, (10, 10)), (2, (50, 40))):
            n += 1
            anns.append({"id": n, "image_id": img["id"], "category_id": cat, "bbox": [x, y, 30, 30], "area": 900,
                         "iscrowd": 0})
            shift = img["id"] * cat  # detections of varying quality
            dets.append({"image_id": img["id"], "category_id": cat, "bbox": [x + shift, y, 30, 30],
                         "score": 0.9 - 0.1 * img["id"]})
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        full = COCOeval(gt, dt, "bbox")
        full.evaluate()
        full.accumulate()
        stats = tfodkit.compat.category_stats(full)
        for k, cat in enumerate((1, 2)):
            one = COCOeval(gt, dt, "bbox")
            one.params.catIds = [cat]
            one.evaluate()
            one.accumulate()
            one.summarize()
            np.testing.assert_allclose(stats[:, k], one.stats, atol=1e-9)
    assert stats.shape == (12, 2) and stats[0, 0] != stats[0, 1]


PER_CATEGORY = """
import tfodkit.compat
import numpy as np
from object_detection.core import standard_fields as f
from object_detection.metrics import coco_evaluation
e = coco_evaluation.CocoDetectionEvaluator([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
                                           include_metrics_per_category=True)
e.add_single_ground_truth_image_info("img", {f.InputDataFields.groundtruth_boxes: np.array([[10., 10., 50., 50.]]),
                                             f.InputDataFields.groundtruth_classes: np.array([1])})
e.add_single_detected_image_info("img", {f.DetectionResultFields.detection_boxes: np.array([[10., 10., 50., 50.]]),
                                         f.DetectionResultFields.detection_scores: np.array([0.9]),
                                         f.DetectionResultFields.detection_classes: np.array([1])})
m = e.evaluate()
print(round(m["DetectionBoxes_PerformanceByCategory/mAP/cat"], 3))
"""


# A TFOD code path run in a fresh interpreter: (its code, the last line it prints with every shim, the shim it
# needs, what its error says when TFODKIT_COMPAT_DISABLE names that shim).
CODE_PATHS = {
    "training_imports": (IMPORT_TRAIN_PATH, "ok", "estimator", "estimator"),
    "labelled_boxes_drawn": (DRAW, "1 1", "pillow_getsize", "getsize"),
    "deepmac_lab_conversion": (DEEPMAC, "(1, 2, 2, 3)", "tensorflow_io", "No module named 'tensorflow_io'"),
    "per_category_metrics": (PER_CATEGORY, "1.0", "coco_category_stats", "Category stats do not exist"),
}


@pytest.mark.parametrize("path", list(CODE_PATHS))
def test_the_tfod_code_path_works_with_the_shims(path):
    code, printed, _, _ = CODE_PATHS[path]
    out = run_python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == printed


@pytest.mark.parametrize("path", list(CODE_PATHS))
def test_the_tfod_code_path_fails_without_its_shim(path):
    code, _, shim, error = CODE_PATHS[path]
    out = run_python(code, env={"TFODKIT_COMPAT_DISABLE": shim})
    assert out.returncode != 0
    assert error in out.stderr, out.stderr[-2000:]
