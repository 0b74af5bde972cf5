"""``<training_dir>/run.json``: what one train.sh run did, and whether a rerun has anything to do.

tfodkit/run.py (train.sh) writes it in-process: :func:`start` before the first
step, :func:`step` after each, :func:`finish` at the end whatever the outcome;
``finish`` adds the versions, the sha256 of the pipeline.config, the steps
trained (train.json), the metrics (metrics.json), the export (export.json) and
the exit status. A rerun first asks :func:`up_to_date`: when the previous run
finished with status 0 from the same inputs and its outputs are all still
there, no step needs to run. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfodkit import __version__
from tfodkit.doctor import PACKAGES
from tfodkit.fsutil import write_json_atomic

# The distributions whose versions run.json records: the ones doctor checks.
VERSIONS = tuple(dist for _label, dist in PACKAGES)


def _path(training_dir: Path) -> Path:
    return training_dir / "run.json"


def load(training_dir: Path) -> dict:
    """run.json, or {} when there is none (or it is unreadable: a new record replaces it)."""
    try:
        data = json.loads(_path(training_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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


def step(training_dir: Path, name: str, status: int, seconds: float, skipped: str | None = None) -> dict:
    """Append one step's outcome; ``skipped`` says why a step did not need to run."""
    data = load(training_dir)
    entry: dict[str, Any] = {"name": name, "status": status, "seconds": round(seconds, 1)}
    if skipped:
        entry["skipped"] = skipped
    data.setdefault("steps", []).append(entry)
    save(training_dir, data)
    return data


def record(training_dir: Path, **fields: Any) -> dict:
    """Set top-level fields of run.json (e.g. ``inputs``, what the run was made from)."""
    data = load(training_dir)
    data.update(fields)
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(commands: dict[str, list[str]], files: dict[str, Path | None], records_dir: Path) -> dict:
    """What a run is made from, cheap to compute: the step commands (every option and path), the sha256
    of the named small files (config override, hparams), and the name, size and mtime of every file in
    the records folder (records are too big to hash on every rerun)."""
    listing = {}
    if records_dir.is_dir():
        for path in sorted(records_dir.iterdir()):
            if path.is_file():
                st = path.stat()
                listing[path.name] = [st.st_size, st.st_mtime_ns]
    return {"toolkit": __version__, "commands": commands,
            "files": {k: (_sha256(v) if v is not None and v.is_file() else None) for k, v in files.items()},
            "records": listing}


def _latest_checkpoint(training_dir: Path) -> str | None:
    """The checkpoint TensorFlow's ``checkpoint`` state file names as the latest (its base name)."""
    try:
        text = (training_dir / "checkpoint").read_text()
    except OSError:
        return None
    m = re.search(r'^model_checkpoint_path: "([^"]+)"', text, re.M)
    return Path(m.group(1)).name if m else None


def up_to_date(previous: dict, inputs: dict, training_dir: Path, export_dir: Path,
               formats: Sequence[str]) -> str | None:
    """Why no step of this run needs to run, or None when some step does.

    Decided from the run's own records, without TensorFlow: the previous run.json
    (status 0, the same ``inputs``), the pipeline.config it hashed, train.json
    (trained to its last step) and the checkpoint state file, metrics.json and
    the export's export.json (both from that checkpoint, the export with these ``formats``).
    """
    if previous.get("status") != 0 or previous.get("inputs") != inputs:
        return None
    config = training_dir / "pipeline.config"
    if not config.is_file() or _sha256(config) != previous.get("pipeline_config_sha256"):
        return None
    train = _read_json(training_dir / "train.json") or {}
    step_done, total = train.get("step"), train.get("num_steps")
    if train.get("status") not in ("trained", "already_trained") or not total or step_done != total:
        return None
    ckpt = f"ckpt-{step_done}"
    if _latest_checkpoint(training_dir) != ckpt or not (training_dir / f"{ckpt}.index").is_file():
        return None
    metrics = _read_json(training_dir / "metrics.json") or {}
    if Path(str(metrics.get("checkpoint"))).name != ckpt or metrics.get("step") != step_done:
        return None
    export = _read_json(export_dir / "export.json") or {}
    if Path(str(export.get("checkpoint"))).name != ckpt or export.get("requested_formats") != list(formats) \
            or not (export_dir / "saved_model" / "saved_model.pb").is_file():
        return None
    score = f", mAP@0.5 {metrics['mAP@0.5']:.3f}" if isinstance(metrics.get("mAP@0.5"), int | float) else ""
    return (f"trained to step {step_done}/{total}, evaluated ({ckpt}{score}) and exported ({export_dir}) by the "
            f"run of {previous.get('finished_at')}, from the same inputs")
