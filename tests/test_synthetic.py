"""The synthetic shapes dataset and its one make-records step (tfodkit.synthetic), as the demo runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _synthetic(data: Path, records: Path, images: int, holdout: int, seed: int) -> subprocess.CompletedProcess:
    """python -m tfodkit.synthetic --records_dir in a fresh interpreter; it must succeed."""
    args = ["--output_dir", data, "--images", images, "--holdout", holdout, "--seed", seed, "--records_dir", records]
    result = subprocess.run([sys.executable, "-m", "tfodkit.synthetic", *map(str, args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_records_dir_converts_the_annotated_images_and_keeps_the_holdout_out(tmp_path):
    data, records = tmp_path / "data", tmp_path / "records"
    result = _synthetic(data, records, images=6, holdout=2, seed=5)
    lines = result.stdout.splitlines()
    assert lines[0] == f"synthetic: 6 images + 2 held out in {data}"
    assert lines[1].startswith("converted 6 of 6 images")
    with open(data / "annotations.csv") as f:
        boxes = len(list(csv.DictReader(f)))
    report = json.loads((records / "dataset.json").read_text())
    assert report["totals"]["written"] == {"images": 6, "boxes": boxes}
    assert {s: report["splits"][s]["images"] for s in ("training", "testing")} == {"training": 5, "testing": 1}
    assert [c["name"] for c in report["classes"]] == ["circle", "square"]
    assert (records / "classes.pbtxt").is_file() and (records / "training.record").stat().st_size > 0
    assert len(list((data / "holdout").glob("*.jpg"))) == 2 and "holdout" not in report["images"]


def test_one_seed_makes_byte_identical_records_in_two_processes(tmp_path):
    """Records are reproducible to the byte (protobuf's map order differs between processes unless pinned)."""
    def make(name: str) -> bytes:
        records = tmp_path / name / "records"
        _synthetic(tmp_path / name, records, images=4, holdout=0, seed=3)
        return b"".join((records / f"{split}.record").read_bytes() for split in ("training", "testing"))

    assert make("a") == make("b")
