"""The lock files, the venv built from them, and scripts/install.sh."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import time

from tests.conftest import ROOT

REQ = ROOT / "requirements"
TFOD_SHA256 = "84218d7f72d48d2a9035df044880694627baf1e9845ecc63a25b03190cd58257"


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^\s\\;]+)", line)
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_direct_requirement_is_pinned_identically_in_the_lock():
    lock = _pins(REQ / "lock.txt") | _pins(REQ / "lock-dev.txt")
    for infile in ("runtime.in", "dev.in"):
        for name, version in _pins(REQ / infile).items():
            assert lock.get(name) == version, f"{infile}: {name}=={version} but lock has {lock.get(name)}"


def test_lock_pins_tensorflow_that_tf_models_official_accepts():
    lock = _pins(REQ / "lock.txt")
    tf_minor = ".".join(lock["tensorflow"].split(".")[:2])
    nodeps = _pins(REQ / "nodeps.txt")
    assert nodeps["tf-models-official"].startswith(tf_minor), "tf-models-official declares tensorflow~=<its version>"
    assert lock["tf-keras"].startswith(tf_minor)


def test_nodeps_packages_are_hash_pinned_and_tfod_is_the_known_sdist():
    text = (REQ / "nodeps.txt").read_text()
    entries = [e for e in re.split(r"\n(?=[a-z])", re.sub(r"^#.*\n", "", text, flags=re.M)) if e.strip()]
    assert len(entries) == 3
    for entry in entries:
        assert "--hash=sha256:" in entry, entry
    assert f"tf-object-detection-api==0.1 \\\n    --hash=sha256:{TFOD_SHA256}" in text


def test_the_venv_holds_exactly_the_locked_versions():
    expected = _pins(REQ / "lock.txt") | _pins(REQ / "lock-dev.txt") | _pins(REQ / "nodeps.txt")
    wrong = {}
    for name, version in expected.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong, f"venv differs from the lock (want, have): {wrong}"


def test_no_opencv_python_beside_headless():
    assert md.version("opencv-python-headless")
    names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
    assert "opencv-python" not in names


def test_install_is_idempotent_and_fast():
    start = time.perf_counter()
    out = subprocess.run(["bash", "scripts/install.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    assert time.perf_counter() - start < 10


def test_make_demo_installs_the_runtime_only(tmp_path):
    venv = tmp_path / "venv"
    dry = subprocess.run(["make", "-n", "demo", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    installs = [line for line in dry.stdout.splitlines() if "scripts/install.sh" in line]
    assert len(installs) == 1 and installs[0].endswith(f"VENV={venv} scripts/install.sh --runtime-only"), installs
    # this venv is a full install of the same runtime locks: up to date for the demo, and still a full install
    stamp = ROOT / ".venv" / ".tfodkit-installed"
    before = stamp.read_text()
    start = time.perf_counter()
    out = subprocess.run(["make", "install-runtime"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "up to date (a full install)" in out.stdout
    assert time.perf_counter() - start < 10
    assert stamp.read_text() == before


def test_install_refuses_a_wrong_python(tmp_path):
    fake = tmp_path / "python3.10"
    # Answers the two questions install.sh asks as a Python 3.10 would.
    fake.write_text('#!/bin/sh\ncase "$*" in *version_info*) exit 1;; *python_version*) echo 3.10.13;; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "VENV": str(tmp_path / "venv")}
    out = subprocess.run(["bash", "scripts/install.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2  # nothing was done (README: CLI conventions)
    assert out.stderr.strip() == (f"error: {fake} is Python 3.10.13, the lock is for 3.11 "
                                  f"(set PYTHON=/path/to/python3.11)")
    assert not (tmp_path / "venv").exists()


def test_install_names_a_missing_python(tmp_path):
    env = {**os.environ, "PYTHON": "no-such-python3.11"}
    out = subprocess.run(["bash", "scripts/install.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert "no-such-python3.11 not found" in out.stderr
