"""``<training_dir>/run.json``: what one train.sh run did, step by step.

    python -m tfodkit.runlog start  --training_dir D --model NAME [--argv ...]
    python -m tfodkit.runlog step   --training_dir D --name NAME --status N --seconds S
    python -m tfodkit.runlog finish --training_dir D [--export_dir E] --status N

train.sh calls these around each step; ``finish`` adds the versions, the
sha256 of the pipeline.config, the steps trained (train.json), the metrics
(metrics.json) and the exit status. Every write is atomic.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit import __version__
from tfodkit.doctor import PACKAGES
from tfodkit.errors import cli
from tfodkit.fsutil import write_json_atomic

# The distributions whose versions run.json records: the ones doctor checks.
VERSIONS = tuple(dist for _label, dist in PACKAGES)


def _path(training_dir: Path) -> Path:
    return training_dir / "run.json"


def load(training_dir: Path) -> dict:
    path = _path(training_dir)
    return json.loads(path.read_text()) if path.is_file() else {}


def save(training_dir: Path, data: dict) -> None:
    write_json_atomic(_path(training_dir), data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def start(training_dir: Path, model: str, argv: list[str]) -> dict:
    data = {"model": model, "arguments": argv, "started_at": _now(), "steps": [], "status": None}
    previous = load(training_dir)
    if previous:
        data["previous_runs"] = previous.pop("previous_runs", []) + [
            {k: previous.get(k) for k in ("started_at", "finished_at", "status")}]
    save(training_dir, data)
    return data


def step(training_dir: Path, name: str, status: int, seconds: float) -> dict:
    data = load(training_dir)
    data.setdefault("steps", []).append({"name": name, "status": status, "seconds": round(seconds, 1)})
    save(training_dir, data)
    return data


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def finish(training_dir: Path, status: int, export_dir: Path | None = None) -> dict:
    data = load(training_dir)
    versions = {"python": platform.python_version(), "tfodkit": __version__}
    for dist in VERSIONS:
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    config = training_dir / "pipeline.config"
    metrics = _read_json(training_dir / "metrics.json")
    if metrics:
        metrics = {k: v for k, v in metrics.items() if k != "all"}
    data.update({
        "finished_at": _now(),
        "status": status,
        "versions": versions,
        "pipeline_config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
        "training": _read_json(training_dir / "train.json"),
        "metrics": metrics,
        "export": _read_json(export_dir / "export.json") if export_dir else None,
        "seconds": round(sum(s["seconds"] for s in data.get("steps", [])), 1),
    })
    save(training_dir, data)
    return data


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfodkit.runlog", description="Record a train.sh run in run.json.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start")
    p.add_argument("--training_dir", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--argv", nargs="*", default=[])
    p = sub.add_parser("step")
    p.add_argument("--training_dir", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--status", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("finish")
    p.add_argument("--training_dir", type=Path, required=True)
    p.add_argument("--export_dir", type=Path)
    p.add_argument("--status", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        start(args.training_dir, args.model, args.argv)
    elif args.command == "step":
        step(args.training_dir, args.name, args.status, args.seconds)
    else:
        data = finish(args.training_dir, args.status, args.export_dir)
        print(f"run: status {data['status']}, {data['seconds']} s in steps, record {_path(args.training_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
