"""The Dockerfile, read as text (no Docker engine here; hadolint runs in make lint)."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.test_install import _pins

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_base_image_is_the_gpu_tensorflow_of_the_lock():
    lock_tf = _pins(ROOT / "requirements" / "lock.txt")["tensorflow"]
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    assert base == f"tensorflow/tensorflow:{lock_tf}-gpu"
    assert "FROM ${BASE_IMAGE}" in DOCKERFILE


def test_installs_the_same_lock_without_cache_and_tfod_by_hash():
    assert "pip install --no-cache-dir -r requirements/lock.txt" in DOCKERFILE
    assert "--no-deps --require-hashes -r requirements/nodeps.txt" in DOCKERFILE
    assert "pip show --quiet opencv-python" in DOCKERFILE
    for line in DOCKERFILE.splitlines():
        if "pip install" in line:
            assert "--no-cache-dir" in line, line


def test_entrypoint_workdir_port_and_smoke_check():
    assert "WORKDIR /opt/tfod" in DOCKERFILE
    assert 'ENTRYPOINT ["/opt/tfod/train.sh"]' in DOCKERFILE
    assert "EXPOSE 6006" in DOCKERFILE
    assert re.search(r"^RUN python3 -m tfodkit doctor", DOCKERFILE, re.M)
    copied = " ".join(re.findall(r"^COPY (.+)$", DOCKERFILE, re.M))
    for needed in ("tfodkit/", "configs/", "train.sh", "readconfig.py", "predict.py", "requirements/lock.txt"):
        assert needed in copied


def test_no_secrets_and_a_dockerignore_that_keeps_the_context_small():
    assert not re.search(r"AWS_(SECRET|ACCESS)|PASSWORD|TOKEN", DOCKERFILE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "terraform"):
        assert entry in ignored


def test_the_sidecar_command_of_terraform_exists_in_the_image():
    """terraform's default sidecar runs `python -m tfodkit.artifacts sync` in this image."""
    assert (ROOT / "tfodkit" / "artifacts.py").is_file() or (ROOT / "tfodkit" / "artifacts").is_dir()
    assert "python" in DOCKERFILE and "/usr/local/bin/python" in DOCKERFILE
