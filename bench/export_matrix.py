"""Which export formats pass for each base config: a short from-scratch training of each, exported to every format.

    .venv/bin/python bench/export_matrix.py [--steps N] [--size PX] [--models "SSD MobileNet V2 FPNLite 320x320,..."]
        [--work DIR] [--out FILE]

For each model of configs/base (tfodkit.zoo.BASE_MODELS: SSD MobileNet V2
FPNLite 320x320, EfficientDet D0, Faster R-CNN ResNet50, CenterNet ResNet50),
train.sh trains it from scratch (TFOD_FROM_SCRATCH=1) for --steps steps of
batch 4 on synthetic shapes at --size x --size (the model's input resized to
that too, so the run takes minutes on 2 CPU cores), then exports it with
TFOD_EXPORT_FORMATS set to every format; export.json's rows are collected.
A short training leaves the heavier models near mAP 0, so their deltas say
little about accuracy: the statuses, sizes and ms/image are the point.
Prints a Markdown table and writes JSON (default bench/results/export_matrix.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfodkit.errors import ArgumentParser  # noqa: E402
from tfodkit.export_formats import FORMATS  # noqa: E402
from tfodkit.fsutil import write_json_atomic  # noqa: E402
from tfodkit.zoo import BASE_MODELS  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def override(base_config: str, size: int) -> str:
    """A partial pipeline.config that sets the model's input to size x size, keeping its resizer kind."""
    text = (ROOT / "configs" / "base" / base_config).read_text()
    arch = next(a for a in ("ssd", "faster_rcnn", "center_net") if f"\n  {a} {{" in f"\n{text}")
    if "fixed_shape_resizer" in text:
        resizer = f"fixed_shape_resizer {{ height: {size} width: {size} }}"
    else:
        resizer = f"keep_aspect_ratio_resizer {{ min_dimension: {size} max_dimension: {size} }}"
    return f"model {{\n  {arch} {{\n    image_resizer {{ {resizer} }}\n  }}\n}}\n"


def run_one(name: str, base_config: str, records: Path, work: Path, steps: int, size: int) -> dict:
    folder = work / base_config.removesuffix(".config")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "override.config").write_text(override(base_config, size))
    (folder / "hparams.json").write_text(json.dumps({"batch_size": 4, "train_steps": steps,
                                                     "checkpoint_every_n": steps, "seed": 0}))
    env = {**os.environ, "TENSORBOARD": "0", "TFOD_FROM_SCRATCH": "1", "TFODKIT_PYTHON": sys.executable,
           "TFOD_EXPORT_FORMATS": ",".join(FORMATS)}
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "train.sh"), folder / "models", folder / "training",
                           folder / "exported", records, name, folder / "override.config", folder / "hparams.json"],
                          env=env, capture_output=True, text=True)
    (folder / "train.log").write_text(proc.stdout + proc.stderr)
    result = {"model": name, "base_config": base_config, "status": proc.returncode,
              "seconds": round(time.monotonic() - start, 1)}
    export = folder / "exported" / "export.json"
    if export.is_file():
        result["export"] = json.loads(export.read_text())
    metrics = folder / "training" / "metrics.json"
    if metrics.is_file():
        result["train_map50"] = json.loads(metrics.read_text()).get("mAP@0.5")
    return result


def markdown(results: list[dict]) -> str:
    rows = ["| model | format | status | size MB | mAP@0.5 | delta mAP@0.5 | ms/img | reason |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "export" not in r:
            rows.append(f"| {r['model']} | - | train.sh exit {r['status']} | | | | | see train.log |")
            continue
        for e in r["export"]["formats"]:
            def num(v, spec):
                return format(v, spec) if isinstance(v, int | float) else "-"
            rows.append(f"| {r['model']} | {e['format']} | {e['status']} | {num(e['size_mb'], '.1f')} | "
                        f"{num(e['map50'], '.3f')} | {num(e['delta_map50'], '+.3f')} | "
                        f"{num(e['ms_per_image'], '.0f')} | {e['reason'] or ''} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="bench/export_matrix.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps of each model (default 100)")
    parser.add_argument("--size", type=int, default=256, help="image and model input side (default 256)")
    parser.add_argument("--models", default=",".join(n for n, _ in BASE_MODELS),
                        help="comma list of zoo names (default: the four with a base config)")
    parser.add_argument("--work", type=Path, default=RESULTS / "export_matrix")
    parser.add_argument("--out", type=Path, default=RESULTS / "export_matrix.json")
    args = parser.parse_args(argv)
    by_name = dict(BASE_MODELS)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"--models: {unknown[0]!r} has no base config (those that do: {', '.join(by_name)})")
    records = args.work / "records"
    if not (records / "testing.record").is_file():
        from tfodkit import synthetic

        synthetic.make_records(records, args.work / "data", images=48, holdout=0, size=args.size, seed=0,
                               test_fraction=0.25, workers=1)
    results = []
    for name in names:
        print(f"export_matrix: {name} ...", flush=True)
        results.append(run_one(name, by_name[name], records, args.work, args.steps, args.size))
        print(markdown(results[-1:]), flush=True)
        write_json_atomic(args.out, {"steps": args.steps, "size": args.size, "cpus": os.cpu_count(),
                                     "results": results})
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
