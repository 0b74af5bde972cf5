"""What the benchmark scripts share: the repository's paths, running a step into a log, the synthetic records."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SSD = "SSD MobileNet V2 FPNLite 320x320"


def bench_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository importable, plus ``extra``."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` from the repository root, its output into ``log``; its wall seconds. Exits on failure."""
    start = time.monotonic()
    with open(log, "w") as out:
        status = subprocess.run(cmd, cwd=ROOT, env=env or bench_env(), stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed with status {status} (see {log})")
    return seconds


def make_records(work: Path, images: int) -> Path:
    """``images`` synthetic images in work/data converted to work/records (``tfodkit.synthetic.make_records``,
    its output in work/records.log); the records folder."""
    from tfodkit import synthetic

    with open(work / "records.log", "w") as log:
        return synthetic.make_records(work / "records", work / "data", images=images, holdout=0, out=log)


def write_zoo(work: Path, env: dict[str, str]) -> Path:
    """A zoo-layout model of random weights in work/zoo (``tests.untrained_model``: no download), in a fresh
    interpreter, its output in work/zoo.log; the folder."""
    run([sys.executable, "-c", "import sys; from pathlib import Path; from tests.untrained_model import "
         "write_pretrained_dir; write_pretrained_dir(Path(sys.argv[1]))", str(work / "zoo")], work / "zoo.log", env)
    return work / "zoo"
