"""``convert``: annotations -> training/testing TFRecords, classes.pbtxt and dataset.json.

The flow, and why:

1. Read the annotations (VOC XML files are parsed in the worker pool).
2. Find byte-identical images (sizes first, then 8 KiB, then a full hash).
3. Split the images into training and testing, deterministic by seed and
   stratified by each image's rarest class, so rare classes land on both
   sides where they can (largest-remainder quotas keep the total at
   round(test_fraction * images)); identical images stay on one side.
4. Workers (forked once TensorFlow is imported) read each image, check it, and
   write its tf.train.Example into a per-chunk TFRecord file. The parent takes
   the chunks in order and appends each whole file to its shard (chunks go
   round robin over the shards) with ``copy_file_range``: image bytes never
   pass through a pipe and the parent stays nearly idle. At most a few chunks
   are in flight, so memory stays flat whatever the dataset's size.
5. Everything is written under a staging folder inside the output folder and
   renamed into place only when complete; on any failure (or problems with
   ``--strict``) the staging folder is removed and nothing is left behind.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import collections
import errno
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import stat
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from tfodkit.dataset import example, labelmap
from tfodkit.dataset.problems import print_problems
from tfodkit.dataset.readers import KINDS, Annotations, Entry, Problem, read
from tfodkit.errors import FAILURE, UserError
from tfodkit.records import LABEL_MAP, REPORT, SPLITS, file_names, input_glob, is_layout_file

# Shards of about 100-200 MB each, TensorFlow's guidance for TFRecord files (tf.data performance guide).
SHARD_SIZE_MB = 150.0


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- split

def find_duplicates(entries: list[Entry], images_dir: Path) -> dict[int, int]:
    """{index: index of the first entry (by file name) whose image has the same bytes}.

    Cheap on large sets: only files of equal size are read, first their first and
    last 4 KiB, and only files equal there are hashed in full.
    """
    by_size: dict[int, list[int]] = collections.defaultdict(list)
    for i, entry in enumerate(entries):
        try:
            st = os.stat(images_dir / entry.filename)
        except OSError:
            continue  # the workers report it
        if stat.S_ISREG(st.st_mode) and st.st_size:
            by_size[st.st_size].append(i)

    def digest(i: int, size: int | None) -> bytes:
        with open(images_dir / entries[i].filename, "rb") as fh:
            if size is None:
                return hashlib.sha256(fh.read()).digest()
            head = fh.read(4096)
            fh.seek(max(0, size - 4096))
            return head + fh.read(4096)

    dup_of: dict[int, int] = {}
    for size, group in by_size.items():
        if len(group) < 2:
            continue
        for stage in (size, None):  # partial, then full
            buckets: dict[bytes, list[int]] = collections.defaultdict(list)
            for i in group:
                try:
                    buckets[digest(i, stage)].append(i)
                except OSError:
                    continue
            group = [i for b in buckets.values() if len(b) > 1 for i in b]
            if stage is None:
                for members in buckets.values():
                    members.sort(key=lambda i: (entries[i].filename, i))
                    dup_of.update({i: members[0] for i in members[1:]})
    return dup_of


def split(entries: list[Entry], test_fraction: float, seed: int,
          dup_of: dict[int, int] | None = None) -> tuple[list[int], list[int], bool]:
    """(training indices, testing indices, stratified?) of ``entries``, deterministic by seed.

    Images with the same bytes form one unit and land on the same side. Each
    unit's stratum is its rarest class (units without boxes form their own
    stratum); each stratum gives its share of test units, rounded by largest
    remainder so the total is round(test_fraction * units). The input's order
    does not matter: strata and units are sorted by name first. Both lists
    come back shuffled by the same seed (so shards mix classes).
    """
    dup_of = dup_of or {}
    units: dict[int, list[int]] = collections.defaultdict(list)
    for i in range(len(entries)):
        units[dup_of.get(i, i)].append(i)
    classes = {u: {o.name for i in members for o in entries[i].objects} for u, members in units.items()}
    frequency = collections.Counter(name for names in classes.values() for name in names)
    strata: dict[str, list[int]] = collections.defaultdict(list)
    for u, names in classes.items():
        strata[min(names, key=lambda c: (frequency[c], c)) if names else ""].append(u)
    rng = random.Random(seed)
    n = len(units)
    want = round(test_fraction * n)
    if n > 1:
        want = min(want, n - 1)  # training is never empty
    quotas, remainders = {}, []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda u: (entries[u].filename, u))
        rng.shuffle(members)
        strata[key] = members
        exact = test_fraction * len(members)
        quotas[key] = math.floor(exact)
        remainders.append((-(exact - math.floor(exact)), key))
    for _, key in sorted(remainders)[:max(0, want - sum(quotas.values()))]:
        quotas[key] += 1
    testing = [i for key in sorted(strata) for u in strata[key][:quotas[key]] for i in units[u]]
    training = [i for key in sorted(strata) for u in strata[key][quotas[key]:] for i in units[u]]
    stratified = all(0 < quotas[k] < len(strata[k]) for k in strata if k and len(strata[k]) > 1)
    rng.shuffle(training)
    rng.shuffle(testing)
    return training, testing, stratified


def folder_split(entries: list[Entry], seed: int) -> tuple[list[int], list[int]]:
    """(training, testing) indices from the split each entry's folder names (images/train, images/val)."""
    unplaced = [e.filename for e in entries if e.split not in SPLITS]
    if unplaced:
        raise UserError(f"--split_from_folders: {len(unplaced)} image(s) are in no train/val/test folder, e.g. "
                        f"{unplaced[0]}", "put every image under images/train or images/val, or drop the flag")
    rng = random.Random(seed)
    training = [i for i, e in enumerate(entries) if e.split == "training"]
    testing = [i for i, e in enumerate(entries) if e.split == "testing"]
    rng.shuffle(training)
    rng.shuffle(testing)
    return training, testing


# ---------------------------------------------------------------- shards

def image_bytes(entry: Entry, images_dir: Path) -> int:
    """The encoded image's size (what a record mostly is), 0 if the file is not there."""
    if entry.data is not None:
        return len(entry.data)
    try:
        return os.stat(images_dir / entry.filename).st_size
    except OSError:
        return 0


def shard_counts(shards: int | str, split_bytes: dict[str, int], split_images: dict[str, int],
                 shard_size_mb: float = SHARD_SIZE_MB) -> tuple[dict[str, int], bool]:
    """({split: shard count}, sharded names?) for ``--shards N`` or ``auto``.

    ``auto``: each split gets ceil(its image bytes / the target size) shards, at
    least 1, at most one per image; one shard each keeps the plain names
    (``training.record``). ``N``: N training shards and a proportional number
    of testing ones (at least 1).
    """
    if shards == "auto":
        target = shard_size_mb * 1024 * 1024
        counts = {s: max(1, min(split_images[s], math.ceil(split_bytes[s] / target))) for s in SPLITS}
        return counts, any(n > 1 for n in counts.values())
    training, testing = split_images["training"], split_images["testing"]
    counts = {"training": min(shards, max(1, training)),
              "testing": 1 if shards == 1 else max(1, min(testing, math.ceil(shards * testing / max(1, training))))}
    return counts, shards > 1


# ---------------------------------------------------------------- workers

class _Serial:
    """The executor interface, run in this process (``--workers 1``)."""

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def map(self, fn, *iterables):
        return map(fn, *iterables)

    def shutdown(self, wait=True, cancel_futures=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _executor(workers: int):
    if workers <= 1:
        return _Serial()
    # fork: the workers inherit the imported TensorFlow instead of importing it again (3-4 s each).
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


def _copy(src: int, dst: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``dst``, in the kernel where it can."""
    while length:
        try:
            done = os.copy_file_range(src, dst, length, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            done = os.write(dst, os.pread(src, length, offset))
        if done <= 0:
            raise OSError(f"short copy from a chunk file at offset {offset}")
        offset += done
        length -= done


# ---------------------------------------------------------------- report

class Report:
    """Statistics and problems of one conversion; becomes dataset.json."""

    def __init__(self, ann: Annotations, label_map: labelmap.LabelMap):
        self.names = label_map.names
        self.problems: list[Problem] = list(ann.problems)
        self.input = {"images": ann.input_images, "boxes": ann.input_boxes}
        self.splits = {s: {"images": 0, "boxes": 0, "images_without_boxes": 0,
                           "classes": collections.defaultdict(lambda: {"images": 0, "boxes": 0})} for s in SPLITS}
        self.widths: list[int] = []
        self.heights: list[int] = []

    def add(self, result: example.Result) -> None:
        stats = self.splits[result.split]
        stats["images"] += 1
        stats["boxes"] += len(result.labels)
        stats["images_without_boxes"] += not result.labels
        for label, count in collections.Counter(result.labels).items():
            cls = stats["classes"][self.names[label]]
            cls["images"] += 1
            cls["boxes"] += count
        self.widths.append(result.width)
        self.heights.append(result.height)

    def counts(self) -> dict[str, int]:
        counts = collections.Counter(p.kind for p in self.problems)
        return {k: counts[k] for k in KINDS if counts[k]}

    def totals(self) -> dict:
        written = {"images": sum(s["images"] for s in self.splits.values()),
                   "boxes": sum(s["boxes"] for s in self.splits.values())}
        dropped_images = collections.Counter(p.kind for p in self.problems if p.image)
        dropped_boxes = collections.Counter()
        for p in self.problems:
            dropped_boxes[p.kind] += p.boxes
        dropped = {"images": {k: dropped_images[k] for k in KINDS if dropped_images[k]},
                   "boxes": {k: dropped_boxes[k] for k in KINDS if dropped_boxes[k]}}
        adds_up = all(written[x] + sum(dropped[x].values()) == self.input[x] for x in ("images", "boxes"))
        return {"input": self.input, "written": written, "dropped": dropped, "adds_up": adds_up}

    def print_problems(self, out=None) -> None:
        counts = self.counts()
        print_problems(f"problems: {sum(counts.values())}",
                       [(f"{kind}: {count}  ({KINDS[kind]})",
                         [f"{p.file} [{p.where}]: {p.detail}" for p in self.problems if p.kind == kind])
                        for kind, count in counts.items()],
                       out or sys.stdout, more=f" (all are listed in {REPORT})")

    def as_dict(self) -> dict:
        splits = {}
        for name, stats in self.splits.items():
            splits[name] = {**stats, "classes": {self.names[i]: stats["classes"][self.names[i]]
                                                 for i in sorted(self.names) if self.names[i] in stats["classes"]}}
        order = {k: i for i, k in enumerate(KINDS)}
        return {
            "splits": splits,
            "image_size": {"width": {"min": min(self.widths, default=0), "max": max(self.widths, default=0)},
                           "height": {"min": min(self.heights, default=0), "max": max(self.heights, default=0)}},
            "totals": self.totals(),
            "problems": {"counts": self.counts(),
                         "items": [p.as_dict() for p in sorted(self.problems, key=lambda p: order[p.kind])]},
        }


# ---------------------------------------------------------------- convert

def plan_chunks(order: dict[str, list[int]], n_shards: dict[str, int], workers: int) -> list[tuple]:
    """[(chunk id, split, shard, entry indices)]: small chunks for small splits, at most 64 images.

    Chunk k of a split goes to shard k % shards, so a shard is a concatenation
    of whole chunk files and shards stay within a chunk of each other in size.
    """
    plan = []
    for name in SPLITS:
        indices = order[name]
        size = max(1, min(64, len(indices) // (8 * max(workers, n_shards[name]))))
        for k, start in enumerate(range(0, len(indices), size)):
            plan.append((len(plan), name, k % n_shards[name], indices[start:start + size]))
    return plan


def _parallel_map(workers: int):
    """A ``map`` that runs in a pool of ``workers`` processes when there is more than one batch."""
    def map_fn(fn, batches):
        batches = list(batches)
        if workers <= 1 or len(batches) < 2:
            return list(map(fn, batches))
        with _executor(workers) as executor:
            return list(executor.map(fn, batches))
    return map_fn


def _write(executor, plan: list[tuple], fds: dict[str, list[int]], report: Report, workers: int,
           progress: bool) -> dict[int, str]:
    """Run the chunks (a bounded window of them in flight) and append each to its shard, in plan order.

    Returns {entry index: split} of the images written.
    """
    kept: dict[int, str] = {}
    bar = tqdm(total=sum(len(c[3]) for c in plan), unit="img", desc="convert", file=sys.stderr,
               disable=not progress, mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)
    pending: collections.deque = collections.deque()
    chunks = iter(plan)
    with bar:
        while True:
            while len(pending) < 2 * workers + 2:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                chunk_id, name, shard, indices = chunk
                pending.append((name, shard, executor.submit(example.convert_chunk, chunk_id, name, indices)))
            if not pending:
                return kept
            name, shard, future = pending.popleft()
            chunk_path, results = future.result()
            src = os.open(chunk_path, os.O_RDONLY)
            try:
                length, expected = os.fstat(src).st_size, sum(r.length for r in results)
                if length != expected:  # pragma: no cover - a bug, not a user error
                    raise RuntimeError(f"{chunk_path} holds {length} bytes, its records {expected}")
                _copy(src, fds[name][shard], 0, length)
            finally:
                os.close(src)
            os.unlink(chunk_path)
            for result in results:
                report.problems.extend(result.problems)
                if result.length:
                    kept[result.index] = name
                    report.add(result)
            bar.update(len(results))


def _duplicate_problems(entries: list[Entry], dup_of: dict[int, int], kept: dict[int, str]) -> list[Problem]:
    problems = []
    for i, first in sorted(dup_of.items(), key=lambda kv: entries[kv[0]].filename):
        if i in kept and first in kept:
            a, b = entries[i], entries[first]
            if _boxes(a) == _boxes(b):
                how = "same boxes"
            elif len(a.objects) != len(b.objects):
                how = f"annotated differently ({len(a.objects)} vs {len(b.objects)} boxes)"
            else:
                how = "annotated differently (other box coordinates)"
            side = (f"in {kept[i]}" if kept[i] == kept[first] else
                    f"{b.filename} in {kept[first]}, {a.filename} in {kept[i]} (the folders' split)")
            problems.append(Problem("duplicate_image", a.filename, a.where,
                                    f"same bytes as {b.filename} [{b.where}]; both kept, {side}; {how}"))
    return problems


def run(fmt: str, images: Path | None, annotations: Path | None, output_dir: Path, *, test_fraction: float = 0.2,
        seed: int = 42, shards: int | str = "auto", shard_size_mb: float = SHARD_SIZE_MB,
        label_map_path: Path | None = None, classes: Path | None = None, split_from_folders: bool = False,
        strict: bool = False, workers: int | None = None, progress: bool = True, out=None) -> dict:
    """Convert; returns the dataset.json content. UserError on bad input (or problems with ``strict``).

    ``images`` may be None for LabelMe (image paths are relative to the JSON
    files, then relative to ``annotations``) and ``annotations`` for YOLO in
    Ultralytics' layout (``labels/`` beside ``images/``).
    """
    out = out or sys.stdout
    if images is None and (fmt != "labelme" or annotations is None):
        raise UserError("--images is missing", f"--format {fmt} needs --images DIR")
    images = Path(images) if images is not None else None
    output_dir = Path(output_dir)
    annotations = Path(annotations) if annotations is not None else None
    if images is not None and not images.is_dir():
        raise UserError(f"images folder {images} not found", "pass the folder the annotations' file names are in")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"--test_fraction {test_fraction} is out of range", "use a fraction in [0, 1), e.g. 0.2")
    if shards != "auto" and (not isinstance(shards, int) or shards < 1):
        raise UserError(f"--shards {shards} is out of range", "use auto (about 150 MB a shard), 1 or more")
    if not shard_size_mb > 0:
        raise UserError(f"--shard_size_mb {shard_size_mb} is out of range", "use a size in MB above 0, e.g. 150")
    workers = workers or default_workers()
    given = labelmap.load(label_map_path) if label_map_path else None
    started = time.monotonic()
    ann = read(fmt, annotations, map_fn=_parallel_map(workers), images=images, classes=classes)
    images = images or ann.images_dir
    if not ann.entries:
        raise UserError(f"no annotated images in {annotations}", f"check --format {fmt} and --annotations")
    label_map = given or labelmap.LabelMap.from_names(ann.classes)
    dup_of = find_duplicates(ann.entries, images)
    if split_from_folders:
        training, testing = folder_split(ann.entries, seed)
        stratified = None  # the folders decide
    else:
        training, testing, stratified = split(ann.entries, test_fraction, seed, dup_of)
    order = {"training": training, "testing": testing}
    split_bytes = {s: sum(image_bytes(ann.entries[i], images) for i in order[s]) for s in SPLITS}
    n_shards, sharded = shard_counts(shards, split_bytes, {s: len(order[s]) for s in SPLITS}, shard_size_mb)
    names = {s: file_names(s, n_shards[s], sharded) for s in SPLITS}
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=output_dir))
    try:
        chunk_dir = staging / "chunks"
        chunk_dir.mkdir()
        report = Report(ann, label_map)
        example.STATE.update(entries=ann.entries, config={
            "images_dir": str(images), "class_ids": label_map.ids, "crowd": ann.crowd, "normalized": ann.normalized,
            "label_map_path": str(label_map_path or "derived from the annotations"), "chunk_dir": str(chunk_dir)})
        fds = {s: [os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for name in names[s]]
               for s in SPLITS}
        try:
            # Forked now, so the workers inherit the entries and the config.
            with _executor(workers) as executor:
                plan = plan_chunks(order, n_shards, workers)
                kept = _write(executor, plan, fds, report, workers, progress)
        finally:
            example.STATE.clear()
            for fd in (fd for s in SPLITS for fd in fds[s]):
                os.close(fd)
        chunk_dir.rmdir()
        report.problems.extend(_duplicate_problems(ann.entries, dup_of, kept))
        data = {
            "format": fmt, "images": str(images), "annotations": str(annotations),
            "test_fraction": None if split_from_folders else test_fraction, "split_from_folders": split_from_folders,
            "seed": seed, "stratified": stratified, "strict": strict,
            "shards": {"requested": shards, "target_mb": shard_size_mb if shards == "auto" else None,
                       "image_bytes": split_bytes, **n_shards},
            "label_map": LABEL_MAP, "classes": [{"id": i, "name": n} for i, n in label_map.items],
            "files": names, "input_paths": {s: input_glob(s, len(names[s]), sharded) for s in SPLITS},
            **({"images_without_label_file": ann.without_labels} if ann.without_labels is not None else {}),
            **report.as_dict(),
        }
        _summary(data, output_dir, time.monotonic() - started, out)
        report.print_problems(out)
        if not data["totals"]["adds_up"]:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"totals do not add up: {data['totals']}")
        n_problems = sum(data["problems"]["counts"].values())
        if strict and n_problems:
            raise UserError(f"{n_problems} problem(s) found and --strict is set; nothing written",
                            "fix them, or run without --strict to clip, drop and report them", status=FAILURE)
        if not kept:
            raise UserError("no image could be converted; nothing written", "see the problems above",
                            status=FAILURE)
        (staging / LABEL_MAP).write_text(labelmap.to_text(label_map), encoding="utf-8")
        (staging / REPORT).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _publish(staging, output_dir)
        return data
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            if created and output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()


def _boxes(entry: Entry) -> list[tuple]:
    return sorted((o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in entry.objects)


def _publish(staging: Path, output_dir: Path) -> None:
    """Replace the previous conversion's files (stale shards too) by the staged ones."""
    for old in output_dir.iterdir():
        if old.is_file() and is_layout_file(old.name):
            old.unlink()
    for new in sorted(staging.iterdir()):
        os.replace(new, output_dir / new.name)
    staging.rmdir()


def _summary(data: dict, output_dir: Path, elapsed: float, out) -> None:
    totals = data["totals"]
    rate = (totals["input"]["images"] / elapsed) if elapsed > 0 else 0.0
    print(f"converted {totals['written']['images']} of {totals['input']['images']} images and "
          f"{totals['written']['boxes']} of {totals['input']['boxes']} boxes in {elapsed:.1f} s "
          f"({rate:.0f} images/s)", file=out)
    for s in SPLITS:
        stats = data["splits"][s]
        shown = data["input_paths"][s]
        print(f"  {s:<9} {stats['images']:>7} images {stats['boxes']:>8} boxes  -> {output_dir / shown}", file=out)
    width = max((len(c["name"]) for c in data["classes"]), default=5)
    print(f"  {'id':>4}  {'class':<{width}}  {'train boxes':>11}  {'test boxes':>10}", file=out)
    for c in data["classes"]:
        tr = data["splits"]["training"]["classes"].get(c["name"], {}).get("boxes", 0)
        te = data["splits"]["testing"]["classes"].get(c["name"], {}).get("boxes", 0)
        print(f"  {c['id']:>4}  {c['name']:<{width}}  {tr:>11}  {te:>10}", file=out)
    if data["stratified"] is False:
        print("  note: some classes with 2+ images are on one side of the split only", file=out)
    if not data["splits"]["testing"]["images"]:
        print("  note: the testing set is empty (raise --test_fraction to evaluate)", file=out)
    empty = {s: data["splits"][s]["images_without_boxes"] for s in SPLITS if data["splits"][s]["images_without_boxes"]}
    if data.get("images_without_label_file"):
        print(f"  note: {data['images_without_label_file']} image(s) without a label file: background images "
              f"(images_without_label_file in {REPORT})", file=out)
    if empty:  # written and counted as images, though no box (left) on them: say so
        print("  note: images without boxes, kept as background (negative) examples: "
              f"{', '.join(f'{k} in {s}' for s, k in empty.items())} (images_without_boxes in {REPORT})", file=out)
