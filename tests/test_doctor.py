"""``python -m tfodkit doctor``: versions, GPUs, and a forward pass per meta-architecture."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from tfodkit import doctor


@pytest.mark.slow
def test_doctor_names_every_version_and_builds_every_meta_architecture(capsys):
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    for label, dist in doctor.PACKAGES:
        assert f"{label:<26} {md.version(dist)}" in out
    assert "aws CLI" in out and "MISSING" not in out
    assert "GPUs seen by the driver" in out and "GPUs seen by TensorFlow" in out and "CUDA (TensorFlow build)" in out
    for arch, config in doctor.MODELS:
        assert f"model {arch}" in out and f"ok: built {config} and ran a forward pass" in out
    assert out.rstrip().endswith("doctor: all checks passed")


@pytest.mark.slow
@pytest.mark.parametrize("arch,config", doctor.MODELS)
def test_forward_pass_returns_boxes(arch, config):
    rows, seconds = doctor.forward_pass(doctor.BASE_CONFIGS / config, num_classes=2)
    assert rows > 0 and seconds > 0


def test_doctor_names_the_missing_piece(monkeypatch, capsys):
    real = md.version

    def version(dist):
        if dist == "tf-models-official":
            raise md.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(doctor.md, "version", version)
    assert doctor.main(["--skip_models"]) == 1
    captured = capsys.readouterr()
    assert "tf-models-official         MISSING" in captured.out
    assert captured.err.strip() == "error: tf-models-official is not installed (run make install)"


def test_cli_dispatch_and_unknown_command(capsys):
    from tfodkit.__main__ import main

    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert main([]) == 0
    assert "doctor" in capsys.readouterr().out
