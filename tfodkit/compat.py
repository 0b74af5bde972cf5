"""The one place that makes TFOD (Dec 2022 snapshot) work on current TensorFlow.

Import this module before anything imports ``tensorflow`` or ``object_detection``::

    import tfodkit.compat  # noqa: F401  (must come first)

Each shim answers one thing that current TensorFlow, Keras or Pillow no longer
provides (docs/tfod-on-current-tf.md tells what fails without it, and why) and
has a test in ``tests/test_compat.py`` that fails without it:

1. tf-slim 1.1.0 calls ``control_flow_ops.case/cond/while_loop``, which TensorFlow
   removed from that module: TFOD's ``TfExampleDecoder`` fails to decode images.
2. TensorFlow 2.16 removed ``tf.compat.v1.estimator``; TFOD's inputs.py and
   model_lib.py import it and the TF2 code path only needs ``ModeKeys``.
3. TensorFlow 2.16+ defaults to Keras 3; TFOD needs Keras 2 (``tf-keras``):
   ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported.
4. ``deepmac_meta_arch`` imports ``tensorflow_io`` at import time for one
   RGB-to-Lab conversion; tensorflow-io does not load on current TensorFlow, so
   we provide that function (in TensorFlow ops) when the package is missing.
5. Pillow 10 removed ``FreeTypeFont.getsize``, which TFOD's
   ``visualization_utils`` calls when drawing evaluation images.
6. TFOD's per-class COCO metrics (``include_metrics_per_category``)
   read ``COCOeval.category_stats``, which only Google's fork of pycocotools
   computed: with PyPI's pycocotools evaluation fails with "Category stats do
   not exist". We compute them from COCOeval's precision/recall arrays.

Log noise: TensorFlow's C++ logs, absl INFO lines and Python warnings from
TensorFlow/TFOD are turned down unless ``TFOD_VERBOSE=1``.

``TFODKIT_COMPAT_DISABLE=name,...`` leaves out shims by name (control_flow_ops,
estimator, legacy_keras, tensorflow_io, pillow_getsize, coco_category_stats): the tests use it to
show that each shim is needed, and it helps to diagnose a new TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
import types
import warnings

VERBOSE = os.environ.get("TFOD_VERBOSE", "0") not in ("", "0", "false", "False")
SHIMS = ("control_flow_ops", "estimator", "legacy_keras", "tensorflow_io", "pillow_getsize", "coco_category_stats")
DISABLED = {s.strip() for s in os.environ.get("TFODKIT_COMPAT_DISABLE", "").split(",") if s.strip()}
if DISABLED - set(SHIMS):
    raise ImportError(f"TFODKIT_COMPAT_DISABLE names unknown shims {sorted(DISABLED - set(SHIMS))} "
                      f"(known: {', '.join(SHIMS)})")

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1" and "legacy_keras" not in DISABLED:
    raise ImportError(
        "tensorflow was imported before tfodkit.compat, so it uses Keras 3 and TFOD "
        "will fail (import tfodkit.compat first, or set TF_USE_LEGACY_KERAS=1)"
    )
if "legacy_keras" not in DISABLED:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # shim 3: tf.keras is Keras 2 (tf-keras), which TFOD needs
if not VERBOSE:
    # 3 also hides the "failed call to cuInit" and oneDNN lines that every CPU-only
    # start prints at ERROR level; doctor reports the visible GPUs instead.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(tensorflow|tf_keras|keras|tf_slim|tensorboard)")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    warnings.filterwarnings("ignore", category=FutureWarning)

import tensorflow as tf  # noqa: E402

if not VERBOSE:
    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass


def _shim_control_flow_ops() -> None:
    """Shim 1: restore the names tf-slim 1.1.0 calls on control_flow_ops."""
    from tensorflow.python.ops import control_flow_ops

    for name, impl in (("case", tf.case), ("cond", tf.cond), ("while_loop", tf.while_loop)):
        if not hasattr(control_flow_ops, name):
            setattr(control_flow_ops, name, impl)


class _ModeKeys:
    """Same values as the removed ``tf.estimator.ModeKeys``."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"


def _shim_estimator() -> None:
    """Shim 2: a ``tf.compat.v1.estimator`` that carries ``ModeKeys``.

    Anything else TFOD reaches for there belongs to the TF1 Estimator path, which
    TensorFlow no longer ships; it fails with an AttributeError naming it.
    """
    v1 = tf.compat.v1
    if hasattr(v1, "estimator"):
        return
    estimator = types.ModuleType("tensorflow.compat.v1.estimator")
    estimator.ModeKeys = _ModeKeys
    v1.estimator = estimator
    sys.modules.setdefault("tensorflow.compat.v1.estimator", estimator)


def rgb_to_lab(rgb: tf.Tensor) -> tf.Tensor:
    """sRGB in [0, 1] (last axis RGB) to CIE L*a*b*, D65 white, 2 degree observer.

    The same formula as ``tfio.experimental.color.rgb_to_lab``.
    """
    rgb = tf.convert_to_tensor(rgb, dtype_hint=tf.float32)
    linear = tf.where(rgb > 0.04045, tf.pow((rgb + 0.055) / 1.055, 2.4), rgb / 12.92)
    to_xyz = tf.constant(
        [[0.412453, 0.357580, 0.180423],
         [0.212671, 0.715160, 0.072169],
         [0.019334, 0.119193, 0.950227]], dtype=rgb.dtype)
    xyz = tf.tensordot(linear, tf.transpose(to_xyz), axes=1)
    xyz = xyz / tf.constant([0.95047, 1.0, 1.08883], dtype=rgb.dtype)
    f = tf.where(xyz > 0.008856, tf.pow(tf.maximum(xyz, 1e-12), 1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _shim_tensorflow_io() -> None:
    """Shim 4: provide ``tensorflow_io.experimental.color.rgb_to_lab`` if tfio is absent."""
    import importlib.util

    if "tensorflow_io" in sys.modules or importlib.util.find_spec("tensorflow_io") is not None:
        return
    tfio = types.ModuleType("tensorflow_io")
    tfio.__doc__ = "tfodkit.compat stand-in: only experimental.color.rgb_to_lab (for TFOD's DeepMAC)."
    tfio.experimental = types.SimpleNamespace(color=types.SimpleNamespace(rgb_to_lab=rgb_to_lab))
    sys.modules["tensorflow_io"] = tfio


def _getsize(self, text, *args, **kwargs):
    """Pillow < 10 ``getsize``: (width, height) including the drawing offset."""
    _, _, right, bottom = self.getbbox(text, *args, **kwargs)
    return right, bottom


def _shim_pillow_getsize() -> None:
    """Shim 5: ``FreeTypeFont.getsize`` (and the bitmap font's) built on ``getbbox``."""
    from PIL import ImageFont

    for cls in (ImageFont.FreeTypeFont, ImageFont.ImageFont, ImageFont.TransposedFont):
        if not hasattr(cls, "getsize"):
            cls.getsize = _getsize


def category_stats(coco_eval):
    """Per-category COCO summary stats: array [12, num_categories], -1 where undefined.

    The 12 rows are the 12 numbers ``COCOeval.summarize`` prints, in its order,
    restricted to one category each.
    """
    import numpy as np

    params, ev = coco_eval.params, coco_eval.eval
    precision, recall = ev["precision"], ev["recall"]  # [T,R,K,A,M], [T,K,A,M]
    area = {name: i for i, name in enumerate(params.areaRngLbl)}
    max_dets = list(params.maxDets)

    def mean(values):
        values = values[values > -1]
        return float(np.mean(values)) if values.size else -1.0

    def iou(thr):
        return np.where(np.isclose(params.iouThrs, thr))[0]

    rows = []
    for k in range(precision.shape[2]):
        m = len(max_dets) - 1
        rows.append([
            mean(precision[:, :, k, area["all"], m]),
            mean(precision[iou(0.5), :, k, area["all"], m]),
            mean(precision[iou(0.75), :, k, area["all"], m]),
            mean(precision[:, :, k, area["small"], m]),
            mean(precision[:, :, k, area["medium"], m]),
            mean(precision[:, :, k, area["large"], m]),
            *[mean(recall[:, k, area["all"], i]) for i in range(len(max_dets))],
            mean(recall[:, k, area["small"], m]),
            mean(recall[:, k, area["medium"], m]),
            mean(recall[:, k, area["large"], m]),
        ])
    return np.array(rows).T if rows else np.zeros((12, 0))


def _shim_coco_category_stats() -> None:
    """Shim 6: give TFOD's COCOEvalWrapper the ``category_stats`` it expects."""
    from object_detection.metrics import coco_tools

    wrapper = coco_tools.COCOEvalWrapper
    if getattr(wrapper, "_tfodkit_category_stats", False):
        return
    original = wrapper.summarize

    def summarize(self):
        original(self)
        if not hasattr(self, "category_stats") and self._iou_type in ("bbox", "segm"):
            self.category_stats = category_stats(self)

    wrapper.summarize = summarize
    wrapper._tfodkit_category_stats = True


for _name, _shim in (("control_flow_ops", _shim_control_flow_ops), ("estimator", _shim_estimator),
                     ("tensorflow_io", _shim_tensorflow_io), ("pillow_getsize", _shim_pillow_getsize),
                     ("coco_category_stats", _shim_coco_category_stats)):
    if _name not in DISABLED:
        _shim()


def exit_now(status: int) -> None:
    """End a TensorFlow CLI process at once, with ``status``, after flushing its output.

    Everything it wrote is complete by then (checkpoints, atomic JSON files,
    flushed event files), but TensorFlow's interpreter teardown (its threads,
    the graphs' garbage) can take from seconds to tens of seconds: measured at
    20 s after a SIGTERM-stopped training on a busy 2-core machine. That time
    counts against ECS's and `docker stop`'s grace period before SIGKILL, and
    is lost between the steps of every run.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
