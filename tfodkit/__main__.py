"""``python -m tfodkit <command>``: the toolkit's subcommands."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "doctor": ("tfodkit.doctor", "check the installation and build one model per meta-architecture"),
    "dataset": ("tfodkit.dataset", "convert annotations (VOC, COCO, CSV, LISA) to TFRecords; check records"),
    "zoo": ("tfodkit.zoo", "list the TF2 zoo models, resolve a name, download one"),
    "train": ("tfodkit.train", "train a pipeline.config for exactly its steps, resumably"),
    "evaluate": ("tfodkit.evaluate", "one-shot COCO evaluation of the latest checkpoint"),
    "export": ("tfodkit.export", "export the latest checkpoint as a SavedModel (and TFLite)"),
    "predict": ("tfodkit.predict", "draw labelled boxes on images with an exported model; JSON detections"),
    "artifacts": ("tfodkit.artifacts", "the S3 artifacts sidecar: sync training and export dirs"),
    "synthetic": ("tfodkit.synthetic", "make the synthetic shapes dataset the demo trains on"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m tfodkit <command> [args]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r} (choose one of: {', '.join(COMMANDS)})", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
