"""The TF2 Detection Model Zoo: every model by display name, downloaded once and cached.

Standard library only (plus tqdm for the progress bar), so launchers such as
runtask.sh can check a model name without importing TensorFlow::

    python -m tfodkit.zoo list
    python -m tfodkit.zoo resolve "ssd mobilenet v2 fpnlite 320"
    python -m tfodkit.zoo fetch "SSD MobileNet V2 FPNLite 320x320" [--cache_dir DIR]

Environment: ``TFOD_ZOO_URL`` (base URL of the tarballs; tests serve them from
127.0.0.1), ``TFOD_CACHE_DIR`` (cache directory), ``TFOD_ZOO_TIMEOUT`` (seconds
a connection or a read may stall before the download fails; default 30).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli
from tfodkit.settings import env_number

DEFAULT_ZOO_URL = "http://download.tensorflow.org/models/object_detection/tf2"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ZooModel:
    name: str  # display name, as in the zoo's table
    date: str  # the tarball's folder on the zoo server
    stem: str  # tarball name without .tar.gz (also the folder inside it)
    meta_arch: str  # the model oneof in pipeline.config: ssd, faster_rcnn, center_net
    size: tuple[int, int]  # input (height, width)
    fine_tune_checkpoint_type: str  # the one that restores a zoo checkpoint into a new head
    keypoints: bool = False
    masks: bool = False
    base_config: str | None = None  # configs/base file for the offline (--from_scratch) path

    @property
    def tarball(self) -> str:
        return f"{self.stem}.tar.gz"

    def url(self, base_url: str | None = None) -> str:
        base = (base_url or os.environ.get("TFOD_ZOO_URL") or DEFAULT_ZOO_URL).rstrip("/")
        return f"{base}/{self.date}/{self.tarball}"


def _m(name, date, stem, arch, size, **kw) -> ZooModel:
    # SSD and Faster R-CNN restore the feature extractor (and SSD's box-predictor
    # tower) from a zoo detection checkpoint with "detection"; CenterNet needs
    # "fine_tune" to restore the backbone without the class-specific heads.
    ftype = "fine_tune" if arch == "center_net" else "detection"
    return ZooModel(name, date, stem, arch, (size, size) if isinstance(size, int) else size, ftype, **kw)


def _centernet(name: str, size: int, date: str, stem: str, keypoints: tuple[str, str] | None = None,
               **kw) -> tuple[ZooModel, ...]:
    """A CenterNet model, "<name> <size>x<size>", then its "<name> Keypoints <size>x<size>" variant when
    ``keypoints`` gives that variant's (date, stem)."""
    plain = _m(f"{name} {size}x{size}", date, stem, "center_net", size, **kw)
    if keypoints is None:
        return (plain,)
    return plain, _m(f"{name} Keypoints {size}x{size}", *keypoints, "center_net", size, keypoints=True)


_D1, _D2, _D3 = "20200711", "20200713", "20210210"
CATALOGUE: tuple[ZooModel, ...] = (
    *_centernet("CenterNet HourGlass104", 512, _D2, "centernet_hg104_512x512_coco17_tpu-8",
                (_D1, "centernet_hg104_512x512_kpts_coco17_tpu-32")),
    *_centernet("CenterNet HourGlass104", 1024, _D2, "centernet_hg104_1024x1024_coco17_tpu-32",
                (_D1, "centernet_hg104_1024x1024_kpts_coco17_tpu-32")),
    *_centernet("CenterNet Resnet50 V1 FPN", 512, _D1, "centernet_resnet50_v1_fpn_512x512_coco17_tpu-8",
                (_D1, "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8"),
                base_config="centernet_resnet50_v1_fpn_512x512.config"),
    *_centernet("CenterNet Resnet101 V1 FPN", 512, _D1, "centernet_resnet101_v1_fpn_512x512_coco17_tpu-8"),
    *_centernet("CenterNet Resnet50 V2", 512, _D1, "centernet_resnet50_v2_512x512_coco17_tpu-8",
                (_D1, "centernet_resnet50_v2_512x512_kpts_coco17_tpu-8")),
    *_centernet("CenterNet MobileNetV2 FPN", 512, _D3, "centernet_mobilenetv2fpn_512x512_coco17_od",
                (_D3, "centernet_mobilenetv2fpn_512x512_coco17_kpts")),
    # EfficientDet D0-D7: one naming rule, the input side grows with the index.
    *(_m(f"EfficientDet D{d} {side}x{side}", _D1, f"efficientdet_d{d}_coco17_tpu-32", "ssd", side,
         base_config="ssd_efficientdet_d0_512x512.config" if d == 0 else None)
      for d, side in enumerate((512, 640, 768, 896, 1024, 1280, 1280, 1536))),
    _m("SSD MobileNet v2 320x320", _D1, "ssd_mobilenet_v2_320x320_coco17_tpu-8", "ssd", 320),
    _m("SSD MobileNet V1 FPN 640x640", _D1, "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8", "ssd", 640),
    _m("SSD MobileNet V2 FPNLite 320x320", _D1, "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8", "ssd", 320,
       base_config="ssd_mobilenet_v2_fpnlite_320x320.config"),
    _m("SSD MobileNet V2 FPNLite 640x640", _D1, "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8", "ssd", 640),
    _m("SSD ResNet50 V1 FPN 640x640 (RetinaNet50)", _D1, "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "ssd", 640),
    _m("SSD ResNet50 V1 FPN 1024x1024 (RetinaNet50)", _D1, "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8", "ssd", 1024),
    _m("SSD ResNet101 V1 FPN 640x640 (RetinaNet101)", _D1, "ssd_resnet101_v1_fpn_640x640_coco17_tpu-8", "ssd", 640),
    _m("SSD ResNet101 V1 FPN 1024x1024 (RetinaNet101)", _D1, "ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8",
       "ssd", 1024),
    _m("SSD ResNet152 V1 FPN 640x640 (RetinaNet152)", _D1, "ssd_resnet152_v1_fpn_640x640_coco17_tpu-8", "ssd", 640),
    _m("SSD ResNet152 V1 FPN 1024x1024 (RetinaNet152)", _D1, "ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8",
       "ssd", 1024),
    _m("Faster R-CNN ResNet50 V1 640x640", _D1, "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8", "faster_rcnn", 640,
       base_config="faster_rcnn_resnet50_v1_640x640.config"),
    _m("Faster R-CNN ResNet50 V1 1024x1024", _D1, "faster_rcnn_resnet50_v1_1024x1024_coco17_tpu-8",
       "faster_rcnn", 1024),
    _m("Faster R-CNN ResNet50 V1 800x1333", _D1, "faster_rcnn_resnet50_v1_800x1333_coco17_gpu-8",
       "faster_rcnn", (800, 1333)),
    _m("Faster R-CNN ResNet101 V1 640x640", _D1, "faster_rcnn_resnet101_v1_640x640_coco17_tpu-8", "faster_rcnn", 640),
    _m("Faster R-CNN ResNet101 V1 1024x1024", _D1, "faster_rcnn_resnet101_v1_1024x1024_coco17_tpu-8",
       "faster_rcnn", 1024),
    _m("Faster R-CNN ResNet101 V1 800x1333", _D1, "faster_rcnn_resnet101_v1_800x1333_coco17_gpu-8",
       "faster_rcnn", (800, 1333)),
    _m("Faster R-CNN ResNet152 V1 640x640", _D1, "faster_rcnn_resnet152_v1_640x640_coco17_tpu-8", "faster_rcnn", 640),
    _m("Faster R-CNN ResNet152 V1 1024x1024", _D1, "faster_rcnn_resnet152_v1_1024x1024_coco17_tpu-8",
       "faster_rcnn", 1024),
    _m("Faster R-CNN ResNet152 V1 800x1333", _D1, "faster_rcnn_resnet152_v1_800x1333_coco17_gpu-8",
       "faster_rcnn", (800, 1333)),
    _m("Faster R-CNN Inception ResNet V2 640x640", _D1, "faster_rcnn_inception_resnet_v2_640x640_coco17_tpu-8",
       "faster_rcnn", 640),
    _m("Faster R-CNN Inception ResNet V2 1024x1024", _D1, "faster_rcnn_inception_resnet_v2_1024x1024_coco17_tpu-8",
       "faster_rcnn", 1024),
    _m("Mask R-CNN Inception ResNet V2 1024x1024", _D1, "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8",
       "faster_rcnn", 1024, masks=True),
)

# (display name, configs/base file) of the models that have a base config: one of each meta-architecture the
# zoo uses (SSD, Faster R-CNN, CenterNet, EfficientDet), the configs the offline path and doctor build.
BASE_MODELS: tuple[tuple[str, str], ...] = tuple((m.name, m.base_config) for m in CATALOGUE if m.base_config)


def _key(text: str) -> str:
    """Matching key: lower case, letters and digits only ("R-CNN" == "rcnn")."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _keys(model: ZooModel) -> set[str]:
    short = re.sub(r"\s*\(.*\)$", "", model.name)  # "SSD ResNet50 V1 FPN 640x640" without "(RetinaNet50)"
    return {_key(model.name), _key(short), _key(model.stem)}


_INDEX = {k: m for m in CATALOGUE for k in _keys(m)}


def resolve(name: str) -> ZooModel:
    """The catalogue entry for a display name (case, spacing and punctuation ignored; a
    unique prefix is enough) or a tarball name (with or without .tar.gz)."""
    key = _key(re.sub(r"\.tar\.gz$", "", name.strip()))
    model = _INDEX.get(key)
    if model is None and key:
        prefixed = {m for k, m in _INDEX.items() if k.startswith(key)}
        model = prefixed.pop() if len(prefixed) == 1 else None  # "... FPNLite 320" -> "... FPNLite 320x320"
    if model is None:
        import difflib

        by_key = {_key(m.name): m.name for m in CATALOGUE}
        close = difflib.get_close_matches(_key(name), list(by_key), n=3, cutoff=0.0)
        raise UserError(f"unknown zoo model {name!r}", "did you mean: " + ", ".join(by_key[k] for k in close))
    return model


def default_cache_dir() -> Path:
    if os.environ.get("TFOD_CACHE_DIR"):
        return Path(os.environ["TFOD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tfodkit" / "zoo"


def is_model_dir(path: Path) -> bool:
    return (path / "pipeline.config").is_file() and (path / "checkpoint" / "ckpt-0.index").is_file()


def _timeout() -> float:
    return env_number("TFOD_ZOO_TIMEOUT", DEFAULT_TIMEOUT, positive=True, unit="seconds")


def _download(url: str, dest: Path, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``dest``; fail on any stall, error or short read."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                      desc=f"download {Path(url).name}", leave=False) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}",
                        "check the model name and TFOD_ZOO_URL", status=FAILURE) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"download of {url} failed: {reason}",
                        "check the network or TFOD_ZOO_URL, or pass --pretrained_dir with an extracted model",
                        status=FAILURE) from None
    if total is not None and done != total:
        raise UserError(f"download of {url} was cut short ({done} of {total} bytes)", "run again", status=FAILURE)


OWNER = "owner.json"  # in a partial download's folder: the host and pid of the process downloading
STALE_SECONDS = 3600  # a partial download untouched this long has no live owner (a download writes every second)


_unwinding = [False]  # set once a download is being stopped (Ctrl-C or SIGTERM): its clean-up runs undisturbed


class Terminated(SystemExit):
    """SIGTERM during a download: exit status 143, after the finally blocks (the partial download) have run."""

    def __init__(self):
        super().__init__(143)


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a download runs, SIGTERM raises Terminated, so that the partial download is removed on the way
    out (by default SIGTERM ends Python at once, and train.sh passes Ctrl-C on to its steps as SIGTERM).
    Only where nothing else handles SIGTERM (e.g. train.py saves a checkpoint on it)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(_signum, _frame):
        if not _unwinding[0]:  # once: a second SIGTERM (or one after Ctrl-C) must not cut the clean-up short
            _unwinding[0] = True
            raise Terminated

    _unwinding[0] = False
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return True  # another machine's (a shared cache): only its age tells
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def sweep_partial_downloads(cache: Path) -> list[Path]:
    """Remove the folders of downloads that did not finish (``.<tarball stem>.XXXX/``): their owner process
    is gone, or nothing in them changed for STALE_SECONDS. Returns what was removed."""
    stems = {m.stem for m in CATALOGUE}
    removed = []
    for folder in cache.glob(".*.*"):
        if not folder.is_dir() or folder.name[1:].rsplit(".", 1)[0] not in stems:
            continue
        try:
            owner = json.loads((folder / OWNER).read_text())
        except (OSError, ValueError):
            owner = {}
        try:
            newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
        except OSError:
            continue  # removed meanwhile
        if (owner and not _alive(owner)) or time.time() - newest > STALE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def fetch(model: ZooModel, cache_dir: Path | str | None = None, base_url: str | None = None,
          progress: bool = True) -> Path:
    """The extracted model directory, downloading and verifying it on first use.

    The tarball goes to a temporary directory inside the cache, is checked (gzip
    and tar readable, pipeline.config and checkpoint/ckpt-0.index present) and
    only then renamed into place: an interrupted or corrupt download leaves
    nothing in the cache, Ctrl-C and SIGTERM included; the folders of downloads
    killed outright are swept at the next download. A cached model is reused
    with no network access.
    """
    with _sigterm_unwinds():
        return _fetch(model, cache_dir, base_url, progress)


def _fetch(model: ZooModel, cache_dir: Path | str | None, base_url: str | None, progress: bool) -> Path:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    dest = cache / model.stem
    if is_model_dir(dest):
        return dest
    url = model.url(base_url)
    cache.mkdir(parents=True, exist_ok=True)
    sweep_partial_downloads(cache)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.stem}.", dir=cache))
    (tmp / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        archive = tmp / model.tarball
        _download(url, archive, _timeout(), progress)
        extract = tmp / "extract"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extract, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UserError(f"{url} is not a readable .tar.gz ({exc})", "run again; if it persists the file on the "
                            "server is damaged", status=FAILURE) from None
        found = [p.parent for p in extract.rglob("pipeline.config") if is_model_dir(p.parent)]
        if not found:
            raise UserError(f"{url} has no pipeline.config with checkpoint/ckpt-0 beside it",
                            "is this a TF2 zoo tarball?", status=FAILURE)
        try:
            found[0].rename(dest)
        except OSError:
            if not is_model_dir(dest):  # another process may have won the race with a complete copy
                raise
        return dest
    except (KeyboardInterrupt, Terminated):
        _unwinding[0] = True
        print(f"zoo: download of {model.tarball} interrupted: its partial download is removed", file=sys.stderr,
              flush=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.zoo", description="The TF2 Detection Model Zoo.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every model: display name, architecture, input size, tarball")
    p = sub.add_parser("resolve", help="print the canonical display name of a model")
    p.add_argument("name")
    p = sub.add_parser("fetch", help="download (once) and print the extracted model directory")
    p.add_argument("name")
    p.add_argument("--cache_dir", default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        print_models()
    elif args.command == "resolve":
        print(resolve(args.name).name)
    else:
        print(fetch(resolve(args.name), args.cache_dir))
    return 0


def print_models() -> None:
    width = max(len(m.name) for m in CATALOGUE)
    print(f"{'model':<{width}}  {'architecture':<12} {'input':<10} tarball")
    for m in CATALOGUE:
        size = f"{m.size[0]}x{m.size[1]}"
        flags = " (keypoints)" if m.keypoints else " (masks)" if m.masks else ""
        print(f"{m.name:<{width}}  {m.meta_arch:<12} {size:<10} {m.tarball}{flags}")


if __name__ == "__main__":
    raise SystemExit(main())
