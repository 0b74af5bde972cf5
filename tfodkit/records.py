"""The records layout: what a records folder holds, what its files are called, and finding them.

A records folder, as ``python -m tfodkit.dataset convert`` writes it and
readconfig reads it::

    training.record  testing.record            one file per split, or shards:
    training-00000-of-00004.record ...         <split>-NNNNN-of-NNNNN.record
    classes.pbtxt                              the label map
    dataset.json                               statistics, problems, the files and their globs
    samples.png                                dataset check's sample grid

TFOD reads a split through ``tf_record_input_reader.input_path``, which it
globs: ``input_glob`` is the pattern that names exactly one split's shards.
Records written by other tools (``train.record``, ``val.record``, ``.tfrecord``)
are found and split by name too (``record_files``, ``split_of``), for the
dataset check. No TensorFlow import here.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfodkit.dataset import labelmap
from tfodkit.errors import UserError

SPLITS = ("training", "testing")
LABEL_MAP = "classes.pbtxt"
REPORT = "dataset.json"
SAMPLES = "samples.png"
# <split>.record, or shard <index> of <of>: <split>-00001-of-00004.record (also .tfrecord, .records: other tools')
RECORD_NAME = re.compile(r"^(?P<split>.+?)(?:-(?P<index>\d{5})-of-(?P<of>\d{5}))?\.(?:tf)?records?$")
CONVERT_FIX = "convert your annotations with: python -m tfodkit.dataset convert ..."


def file_names(split: str, count: int, sharded: bool) -> list[str]:
    """``training.record``, or ``training-00000-of-00004.record`` ... (``count`` of them) when ``sharded``."""
    if not sharded:
        return [f"{split}.record"]
    return [f"{split}-{i:05d}-of-{count:05d}.record" for i in range(count)]


def input_glob(split: str, count: int, sharded: bool) -> str:
    """What a pipeline.config's tf_record_input_reader.input_path says for one split (TFOD globs it)."""
    return f"{split}-?????-of-{count:05d}.record" if sharded else f"{split}.record"


def split_of(path: Path | str) -> str:
    """The split a record file belongs to, by its name: ``training-00001-of-00004.record`` -> ``training``."""
    path = Path(path)
    match = RECORD_NAME.match(path.name)
    return match.group("split") if match else path.stem


def is_record_name(name: str) -> bool:
    return RECORD_NAME.match(name) is not None


def is_layout_file(name: str) -> bool:
    """A file name of the layout above: what a conversion writes, and replaces when run again."""
    match = RECORD_NAME.match(name)
    if match:
        return match.group("split") in SPLITS and name.endswith(".record")
    return name in (LABEL_MAP, REPORT, SAMPLES)


def missing_shards(files: Iterable[Path]) -> list[tuple[str, int, list[int]]]:
    """[(split, shard count, missing shard indices)] of the sharded splits among ``files`` that lack shards."""
    present: dict[tuple[str, int], set[int]] = {}
    for path in files:
        match = RECORD_NAME.match(Path(path).name)
        if match and match.group("of"):
            present.setdefault((match.group("split"), int(match.group("of"))), set()).add(int(match.group("index")))
    return [(split, total, sorted(set(range(total)) - indices))
            for (split, total), indices in sorted(present.items()) if set(range(total)) - indices]


def _shard_of(path: Path, split: str) -> str | None:
    """The shard count in the name of a shard of ``split`` (``"00004"``), else None."""
    match = RECORD_NAME.match(path.name)
    return match.group("of") if match and match.group("split") == split else None


def split_files(records_dir: Path, split: str) -> list[Path]:
    """One split's files in a records folder: ``<split>.record``, else its complete set of shards, else []."""
    single = records_dir / f"{split}.record"
    if single.is_file():
        return [single]
    shards = sorted(p for p in records_dir.glob(f"{split}-*-of-*.record") if p.is_file() and _shard_of(p, split))
    counts = {_shard_of(p, split) for p in shards}
    if len(counts) > 1 or missing_shards(shards):
        raise UserError(f"{records_dir}: {split} shards are incomplete ({len(shards)} files: "
                        f"{shards[0].name} ... {shards[-1].name})", "re-run the dataset conversion")
    return shards


@dataclass
class RecordsDir:
    """A records folder checked for training: both splits, not empty, and a valid label map."""

    path: Path
    train: list[Path]
    test: list[Path]
    label_map: Path
    labels: labelmap.LabelMap


def read_dir(records_dir: Path) -> RecordsDir:
    """The records folder training reads; a UserError naming what is missing or wrong."""
    if not records_dir.is_dir():
        raise UserError(f"records dir {records_dir} does not exist",
                        f"give the folder with {file_names(SPLITS[0], 1, False)[0]}, "
                        f"{file_names(SPLITS[1], 1, False)[0]} and {LABEL_MAP}")
    train, test = (split_files(records_dir, split) for split in SPLITS)
    missing = [f"{split}.record" for split, found in zip(SPLITS, (train, test), strict=True) if not found]
    label_map = records_dir / LABEL_MAP
    if not label_map.is_file():
        missing.append(LABEL_MAP)
    if missing:
        raise UserError(f"{records_dir} lacks {', '.join(missing)}", CONVERT_FIX)
    empty = [p.name for p in train + test if p.stat().st_size == 0]
    if empty:
        raise UserError(f"{records_dir}: empty record file(s) {', '.join(empty)}", "re-run the dataset conversion")
    return RecordsDir(records_dir, train, test, label_map, labelmap.load(label_map, CONVERT_FIX))


def record_files(target: Path) -> tuple[list[Path], Path | None]:
    """The record files of a folder, a file or a glob (any tool's names), and the folder they are in."""
    text = str(target)
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and is_record_name(p.name))
        if not files:
            raise UserError(f"no .record files in {target}", "pass the output folder of convert, or a .record file")
        return files, target
    if target.is_file():
        return [target], target.parent
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if files:
            return files, files[0].parent
    raise UserError(f"{target} not found", "pass a records folder, a .record file or a glob of them")
