"""Atomic files and directory swaps, including a target that is a mount point (a Docker volume)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tfodkit.fsutil import replace_dir, staging_dir, write_json_atomic


def _fill(d: Path, names: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        (d / n).write_text(n)


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_replace_dir_swaps_an_ordinary_directory_whole(tmp_path):
    target = tmp_path / "exported_model"
    _fill(target, ["old_only.txt", "saved_model/saved_model.pb"])
    with staging_dir(target) as tmp:
        assert tmp.parent == tmp_path
        _fill(tmp, ["saved_model/saved_model.pb", "export.json"])
        replace_dir(tmp, target)
    assert _tree(target) == ["export.json", "saved_model/saved_model.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported_model"]  # no staging or old dir left


def test_a_failure_while_staging_leaves_the_old_directory_untouched(tmp_path):
    target = tmp_path / "exported_model"
    _fill(target, ["saved_model/saved_model.pb"])
    with pytest.raises(RuntimeError), staging_dir(target) as tmp:
        _fill(tmp, ["half.txt"])
        raise RuntimeError("exporter crashed")
    assert _tree(target) == ["saved_model/saved_model.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported_model"]


def test_stale_staging_dirs_of_a_killed_run_are_swept(tmp_path):
    target = tmp_path / "exported_model"
    (tmp_path / ".exported_model.staging-abc").mkdir()
    (tmp_path / ".exported_model.old").mkdir()
    with staging_dir(target) as tmp:
        replace_dir(tmp, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported_model"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare(1) to make a private bind mount")
def test_replace_dir_swaps_the_contents_of_a_mount_point(tmp_path):
    """The seed mounts exactly the export directory: renaming it fails with EBUSY.

    A bind mount from the same filesystem (which os.path.ismount does not see)
    in a private mount namespace stands for the Docker volume.
    """
    src, target = tmp_path / "host_folder", tmp_path / "experiments" / "exported_model"
    _fill(src, ["old_only.txt", "saved_model/saved_model.pb"])
    target.mkdir(parents=True)
    code = textwrap.dedent(f"""
        import subprocess, sys
        from pathlib import Path
        from tfodkit.fsutil import is_mount_point, replace_dir, staging_dir
        target = Path({str(target)!r})
        subprocess.run(["mount", "--bind", {str(src)!r}, str(target)], check=True)
        assert is_mount_point(target)
        try:
            target.rename(target.with_name("x"))
        except OSError as exc:
            print("rename:", exc.errno)
        with staging_dir(target) as tmp:
            assert tmp.parent == target, tmp
            (tmp / "saved_model").mkdir()
            (tmp / "saved_model" / "saved_model.pb").write_text("new")
            (tmp / "export.json").write_text("{{}}")
            replace_dir(tmp, target)
    """)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", code],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rename: 16" in out.stdout  # EBUSY: the old swap would have failed here
    # What the host sees in its folder: the new export only, nothing old, no staging left.
    assert _tree(src) == ["export.json", "saved_model/saved_model.pb"]
    assert (src / "saved_model" / "saved_model.pb").read_text() == "new"
    assert [p.name for p in src.iterdir() if p.name.startswith(".")] == []


def test_write_json_atomic_replaces_whole(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": 2})
    assert path.read_text() == '{\n  "b": 2\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
