"""The zoo catalogue and the cached, verified download (served from 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, Followed
from tests.zoo_server import ZooServer, make_tarball
from tfodkit import config, zoo
from tfodkit.errors import UserError
from tfodkit.paths import BASE_CONFIGS

# The display names of the TF2 Detection Model Zoo's table (ExtremeNet left out).
ZOO_TABLE = """CenterNet HourGlass104 512x512|CenterNet HourGlass104 Keypoints 512x512|CenterNet HourGlass104 1024x1024|
CenterNet HourGlass104 Keypoints 1024x1024|CenterNet Resnet50 V1 FPN 512x512|
CenterNet Resnet50 V1 FPN Keypoints 512x512|
CenterNet Resnet101 V1 FPN 512x512|CenterNet Resnet50 V2 512x512|CenterNet Resnet50 V2 Keypoints 512x512|
CenterNet MobileNetV2 FPN 512x512|CenterNet MobileNetV2 FPN Keypoints 512x512|EfficientDet D0 512x512|
EfficientDet D1 640x640|EfficientDet D2 768x768|EfficientDet D3 896x896|EfficientDet D4 1024x1024|
EfficientDet D5 1280x1280|EfficientDet D6 1280x1280|EfficientDet D7 1536x1536|SSD MobileNet v2 320x320|
SSD MobileNet V1 FPN 640x640|SSD MobileNet V2 FPNLite 320x320|SSD MobileNet V2 FPNLite 640x640|
SSD ResNet50 V1 FPN 640x640 (RetinaNet50)|SSD ResNet50 V1 FPN 1024x1024 (RetinaNet50)|
SSD ResNet101 V1 FPN 640x640 (RetinaNet101)|SSD ResNet101 V1 FPN 1024x1024 (RetinaNet101)|
SSD ResNet152 V1 FPN 640x640 (RetinaNet152)|SSD ResNet152 V1 FPN 1024x1024 (RetinaNet152)|
Faster R-CNN ResNet50 V1 640x640|Faster R-CNN ResNet50 V1 1024x1024|Faster R-CNN ResNet50 V1 800x1333|
Faster R-CNN ResNet101 V1 640x640|Faster R-CNN ResNet101 V1 1024x1024|Faster R-CNN ResNet101 V1 800x1333|
Faster R-CNN ResNet152 V1 640x640|Faster R-CNN ResNet152 V1 1024x1024|Faster R-CNN ResNet152 V1 800x1333|
Faster R-CNN Inception ResNet V2 640x640|Faster R-CNN Inception ResNet V2 1024x1024|
Mask R-CNN Inception ResNet V2 1024x1024"""
NAMES = [n.strip() for n in ZOO_TABLE.replace("\n", "").split("|")]


def test_catalogue_is_the_whole_zoo_table():
    assert len(NAMES) == 41
    assert [m.name for m in zoo.CATALOGUE] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_resolves_to_a_tarball_and_meta_architecture(name):
    model = zoo.resolve(name)
    assert model.name == name
    assert model.tarball.endswith(".tar.gz") and model.stem in model.tarball
    assert model.meta_arch in ("ssd", "faster_rcnn", "center_net")
    assert model.fine_tune_checkpoint_type in config.FINE_TUNE_TYPES
    assert f"{model.size[0]}x{model.size[1]}" in name
    # case, spacing and punctuation do not matter; the tarball name works too
    assert zoo.resolve(name.lower().replace(" ", "").replace("-", "")) is model
    assert zoo.resolve(model.stem) is model
    assert zoo.resolve(model.tarball) is model  # as --list_models prints it
    assert model.url("http://h/x/") == f"http://h/x/{model.date}/{model.tarball}"


def test_meta_architectures_and_checkpoint_types():
    assert zoo.resolve("EfficientDet D0 512x512").meta_arch == "ssd"
    assert zoo.resolve("Mask R-CNN Inception ResNet V2 1024x1024").masks
    assert zoo.resolve("CenterNet Resnet50 V1 FPN Keypoints 512x512").keypoints
    assert zoo.resolve("CenterNet Resnet50 V1 FPN 512x512").fine_tune_checkpoint_type == "fine_tune"
    assert zoo.resolve("Faster R-CNN ResNet50 V1 640x640").fine_tune_checkpoint_type == "detection"
    assert zoo.resolve("SSD ResNet50 V1 FPN 640x640").name == "SSD ResNet50 V1 FPN 640x640 (RetinaNet50)"
    assert zoo.resolve("ssd mobilenet v2 fpnlite 320").name == "SSD MobileNet V2 FPNLite 320x320"


def test_unknown_name_lists_three_closest():
    with pytest.raises(UserError) as err:
        zoo.resolve("SSD MobileNet V2 FPNLite 300x300")
    assert str(err.value).startswith("unknown zoo model 'SSD MobileNet V2 FPNLite 300x300' (did you mean: ")
    assert "SSD MobileNet V2 FPNLite 320x320" in str(err.value)
    assert str(err.value).count(",") == 2


def test_list_models_prints_every_model(capsys):
    assert config.main(["--list_models"]) == 0
    out = capsys.readouterr().out
    for model in zoo.CATALOGUE:
        assert model.name in out and model.tarball in out


def test_base_configs_exist_for_the_offline_models():
    offline = [m for m in zoo.CATALOGUE if m.base_config]
    assert {m.meta_arch for m in offline} == {"ssd", "faster_rcnn", "center_net"} and len(offline) == 4
    for m in offline:
        assert (BASE_CONFIGS / m.base_config).is_file()
    assert zoo.BASE_MODELS == tuple((m.name, m.base_config) for m in offline)
    from tfodkit import doctor

    assert sorted(config for _, config in doctor.MODELS) == sorted(config for _, config in zoo.BASE_MODELS)


MODEL = zoo.resolve("SSD MobileNet V2 FPNLite 320x320")


@pytest.fixture
def served():
    body = make_tarball(MODEL.stem, (BASE_CONFIGS / MODEL.base_config).read_text())
    with ZooServer({f"/{MODEL.date}/{MODEL.tarball}": body}) as server:
        yield server


def _leftovers(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_download_once_then_reuse_with_server_stopped(served, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = zoo.fetch(MODEL, cache, base_url=served.url)
    assert zoo.is_model_dir(first) and first == cache / MODEL.stem
    assert len(served.requests) == 1
    served.stop()
    again = zoo.fetch(MODEL, cache, base_url=served.url)
    assert again == first
    assert _leftovers(cache) == [MODEL.stem]


def test_cli_fetch_uses_env_url_and_cache(served, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFOD_ZOO_URL", served.url)
    monkeypatch.setenv("TFOD_CACHE_DIR", str(tmp_path / "c"))
    assert zoo.main(["fetch", "ssd mobilenet v2 fpnlite 320x320"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c" / MODEL.stem)


def test_interrupted_download_leaves_no_cache_entry(served, tmp_path):
    served.mode = "truncate"
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as err:
        zoo.fetch(MODEL, cache, base_url=served.url, progress=False)
    assert MODEL.tarball in str(err.value) and served.url in str(err.value)
    assert _leftovers(cache) == []


def test_corrupt_tarball_leaves_no_cache_entry(tmp_path):
    with ZooServer({f"/{MODEL.date}/{MODEL.tarball}": b"not a tarball" * 100}) as server:
        with pytest.raises(UserError, match="is not a readable .tar.gz"):
            zoo.fetch(MODEL, tmp_path / "cache", base_url=server.url, progress=False)
    assert _leftovers(tmp_path / "cache") == []


def test_tarball_without_checkpoint_is_rejected(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{MODEL.stem}/pipeline.config")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with ZooServer({f"/{MODEL.date}/{MODEL.tarball}": buf.getvalue()}) as server:
        with pytest.raises(UserError, match="has no pipeline.config with checkpoint/ckpt-0"):
            zoo.fetch(MODEL, tmp_path / "cache", base_url=server.url, progress=False)
    assert _leftovers(tmp_path / "cache") == []


def test_missing_model_on_server_names_the_url(served, tmp_path):
    other = zoo.resolve("EfficientDet D0 512x512")
    with pytest.raises(UserError) as err:
        zoo.fetch(other, tmp_path / "cache", base_url=served.url, progress=False)
    assert f"{served.url}/{other.date}/{other.tarball}" in str(err.value) and "HTTP 404" in str(err.value)


def test_unreachable_server_fails_fast(tmp_path, served):
    url = served.url
    served.stop()  # nothing listens on that port any more
    start = time.monotonic()
    with pytest.raises(UserError, match="failed"):
        zoo.fetch(MODEL, tmp_path / "cache", base_url=url, progress=False)
    assert time.monotonic() - start < 5


def test_stalled_server_times_out(served, tmp_path, monkeypatch):
    served.mode = "stall"
    monkeypatch.setenv("TFOD_ZOO_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        zoo.fetch(MODEL, tmp_path / "cache", base_url=served.url, progress=False)
    assert time.monotonic() - start < 5
    assert "timed out" in str(err.value) and "--pretrained_dir" in str(err.value)
    assert _leftovers(tmp_path / "cache") == []


def _partial_downloads(cache):
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(f".{MODEL.stem}.")) if cache.exists() else []


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_download_leaves_no_partial_download(served, tmp_path, sig, status):
    """Ctrl-C, or train.sh passing it on as SIGTERM: the `.<tarball>.XXXX/` folder goes with the process."""
    served.mode = "stall"
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TFOD_ZOO_URL": served.url, "TFOD_ZOO_TIMEOUT": "120"}
    with Followed([sys.executable, "-m", "tfodkit.zoo", "fetch", MODEL.name, "--cache_dir", str(cache)], env=env,
                  terminal_job=True) as run:
        # the download is under way once the server saw the request and the partial folder exists
        run.until("the download to start", lambda: served.requests and _partial_downloads(cache), 60)
        run.signal(sig)
        code = run.finish(20)
    assert code == status, run.stderr
    assert "interrupted: its partial download is removed" in run.stderr
    assert _leftovers(cache) == []


def test_partial_downloads_of_dead_processes_are_swept_at_the_next_download(served, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = cache / f".{MODEL.stem}.killed1"  # a download killed outright (SIGKILL, a power cut)
    killed.mkdir()
    (killed / MODEL.tarball).write_bytes(b"partial")
    (killed / zoo.OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    old = cache / f".{MODEL.stem}.oldstyle"  # no owner file (before they had one), untouched for two hours
    old.mkdir()
    (old / MODEL.tarball).write_bytes(b"partial")
    for path in (old / MODEL.tarball, old):
        os.utime(path, (time.time() - 7200,) * 2)
    live = cache / f".{MODEL.stem}.running"  # another process downloading right now: left alone
    live.mkdir()
    (live / zoo.OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    unrelated = cache / ".not-a-model.x"
    unrelated.mkdir()

    assert zoo.is_model_dir(zoo.fetch(MODEL, cache, base_url=served.url, progress=False))
    assert _leftovers(cache) == sorted([".not-a-model.x", live.name, MODEL.stem])
