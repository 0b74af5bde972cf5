"""The artifacts sidecar: copy the training and export directories to S3 while training runs.

    python -m tfodkit.artifacts sync [--target s3://bucket[/prefix]] [--dir DIR ...] [--interval SEC]
                                     [--run_name NAME] [--manifest PATH] [--retries N] [--once]

Every ``--interval`` seconds, and once more on SIGTERM (ECS sends it when the
training container exits) or SIGINT, each directory is copied to the run's
folder (tfodkit/runs.py): ``<target>/runs/<run name>/<directory name>/``, with
the defaults ``.../training/...`` and ``.../exported_model/...``.
Only files whose size or modification time changed since their last successful
upload are sent; a local JSON manifest remembers them, so a restarted sidecar
does not send everything again, and a new one (the next task of a relaunched
run, whose train.sh restored the run from S3) first counts as sent the files
already in the run's folder with the same size and not older. Each round sends the newest checkpoint's files
first (its data shards, then its ``.index``, then TensorFlow's ``checkpoint``
state file), then the rest: on a spot reclaim the final sync has the two-minute
notice at most, and the checkpoint a relaunch resumes from matters most. A
failed upload is retried (with back-off), then reported and tried again in the
next round: it never stops the sidecar or the training. Exit status: 0 when the
final sync uploaded everything, 1 otherwise.

Run name: ``--run_name`` / ``RUN_NAME`` (runtask.sh sets it); ``RUN_ID``, its
old name, still works with a warning; else the ECS task id, the last segment of
``TaskARN`` from ``$ECS_CONTAINER_METADATA_URI_V4/task``; else
``<hostname>-<UTC timestamp>``.

Every flag has an environment variable (flags win):
``ARTIFACTS_TARGET`` (required), ``ARTIFACTS_DIRS`` (directories separated by
``:``; default ``experiments/training:experiments/exported_model``),
``ARTIFACTS_INTERVAL`` (seconds, default 60), ``RUN_NAME``,
``ARTIFACTS_MANIFEST`` (default ``$TMPDIR/tfodkit-artifacts-<run name>.json``),
``ARTIFACTS_RETRIES`` (extra tries per file, default 3),
``ARTIFACTS_RETRY_DELAY`` (first back-off in seconds, doubled each try; default 2).
boto3 (tfodkit/s3.py) takes credentials and region from the task role and
``AWS_*`` variables (``AWS_ENDPOINT_URL`` included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tfodkit import runs, s3
from tfodkit.errors import ArgumentParser, UserError, cli, on_stop_signals
from tfodkit.fsutil import write_text_atomic
from tfodkit.settings import env_number

DEFAULT_DIRS = "experiments/training:experiments/exported_model"
DEFAULT_INTERVAL = 60.0


def log(message: str) -> None:
    print(f"artifacts: {message}", file=sys.stderr, flush=True)


def parse_target(uri: str) -> s3.S3Uri:
    """s3://bucket[/prefix], by the toolkit's one S3 URI parser."""
    try:
        return s3.parse_s3_uri(uri, "target")
    except UserError as exc:
        raise UserError(exc.what, "set ARTIFACTS_TARGET or --target to s3://<bucket>[/<prefix>], e.g. "
                        "s3://my-artifacts-bucket") from None


def run_name(explicit: str | None = None, timeout: float = 2.0) -> str:
    """The explicit name, else RUN_NAME, else RUN_ID (its old name, with a warning), else the ECS task id
    from the metadata endpoint, else <hostname>-<timestamp>."""
    name = explicit or os.environ.get("RUN_NAME", "").strip()
    if not name and os.environ.get("RUN_ID", "").strip():
        name = os.environ["RUN_ID"].strip()
        log("warning: RUN_ID is the old name of RUN_NAME; set RUN_NAME (RUN_ID will go in a later release)")
    if name:
        return runs.check_name(name)
    task = runs.ecs_task_id(timeout, warn=lambda m: log(f"warning: {m}; using hostname and time"))
    return task or f"{socket.gethostname()}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"  # noqa: UP017


@dataclass
class Round:
    uploaded: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)
    size: int = 0


class Syncer:
    """Uploads changed files of some directories under s3://bucket/prefix/<dir name>/ (prefix: the run's folder)."""

    def __init__(self, client, bucket: str, prefix: str, dirs: Sequence[Path], manifest: Path,
                 retries: int = 3, retry_delay: float = 2.0):
        names = [d.name for d in dirs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserError(f"two directories share the name {', '.join(dupes)}", "their S3 folders would collide")
        self.client, self.bucket, self.prefix, self.dirs = client, bucket, prefix, list(dirs)
        self.manifest_path, self.retries, self.retry_delay = manifest, retries, retry_delay
        self.manifest = self._load()

    def _load(self) -> dict[str, list[int]]:
        try:
            data = json.loads(self.manifest_path.read_text())
            return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def seed(self) -> int:
        """With no manifest yet (a new task of a relaunched run): count as sent the files already in S3 with
        the same size and not older (train.sh restored them from there); returns how many. A failed listing
        only costs uploads."""
        if self.manifest:
            return 0
        there: dict[str, tuple[int, float]] = {}
        try:
            for d in self.dirs:
                folder = s3.S3Uri(self.bucket, "/".join(x for x in (self.prefix, d.name) if x))
                for rel, size, modified in s3.list_prefix(folder, self.client, times=True):
                    there[folder.join(rel).key] = (size, modified)
        except UserError as exc:
            log(f"warning: cannot list what is already in S3 ({exc}); sending everything")
            return 0
        for path, key in self.files():
            try:
                st = path.stat()
            except OSError:
                continue
            if key in there and s3.already_uploaded(st, *there[key]):
                self.manifest[key] = [st.st_size, st.st_mtime_ns]
        return len(self.manifest)

    def _save(self) -> None:
        write_text_atomic(self.manifest_path, json.dumps(self.manifest, indent=0, sort_keys=True))

    def files(self) -> Iterator[tuple[Path, str]]:
        """(local file, S3 key): first the newest checkpoint of each directory (data shards, .index, then
        TensorFlow's `checkpoint` state file, which names it), then everything else."""
        first: list[tuple[Path, str]] = []
        rest: list[tuple[Path, str]] = []
        for d in self.dirs:
            if not d.is_dir():
                continue
            found = {p.relative_to(d).as_posix(): p for p in d.rglob("*") if p.is_file() and not p.is_symlink()}
            newest = runs.newest_complete(found)
            priority = [*newest.files[1:], newest.files[0]] if newest else []  # files[0] is the .index
            priority += ["checkpoint"] if "checkpoint" in found else []
            for rel in priority + sorted(set(found) - set(priority)):
                item = (found[rel], "/".join(x for x in (self.prefix, d.name, rel) if x))
                (first if rel in priority else rest).append(item)
        yield from first
        yield from rest

    def _upload(self, path: Path, key: str) -> str | None:
        """None when uploaded, else the last error."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                self.client.upload_file(str(path), self.bucket, key)
                return None
            except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
        return error

    def sync(self) -> Round:
        result = Round()
        for path, key in self.files():
            try:
                st = path.stat()
            except OSError:
                continue  # removed since the listing (TFOD prunes old checkpoints)
            stamp = [st.st_size, st.st_mtime_ns]
            if self.manifest.get(key) == stamp:
                result.unchanged += 1
                continue
            error = self._upload(path, key)
            if error:
                result.failed.append(key)
                log(f"upload failed: {path} -> s3://{self.bucket}/{key}: {error} (will retry next round)")
                continue
            self.manifest[key] = stamp  # the stat taken before the upload: a later change is sent again
            result.uploaded += 1
            result.size += st.st_size
        try:
            self._save()
        except OSError as exc:
            log(f"warning: cannot write the manifest {self.manifest_path}: {exc}")
        return result


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def run(args: argparse.Namespace) -> int:
    target = args.target or os.environ.get("ARTIFACTS_TARGET")
    if not target:
        raise UserError("no S3 target", "set ARTIFACTS_TARGET=s3://<bucket>[/<prefix>] or pass --target")
    base = parse_target(target)
    dirs = args.dir or [d for d in (os.environ.get("ARTIFACTS_DIRS") or DEFAULT_DIRS).split(":") if d]
    interval = args.interval if args.interval is not None else \
        env_number("ARTIFACTS_INTERVAL", DEFAULT_INTERVAL, positive=True, unit="seconds")
    retries = args.retries if args.retries is not None else \
        int(env_number("ARTIFACTS_RETRIES", 3, minimum=0, integer=True))
    name = run_name(args.run_name)
    folder = runs.layout(base, name).root
    manifest = Path(args.manifest or os.environ.get("ARTIFACTS_MANIFEST")
                    or Path(tempfile.gettempdir()) / f"tfodkit-artifacts-{name}.json")

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log(f"{signal.Signals(signum).name}: final sync")
        stop.set()

    restore = on_stop_signals(on_signal)
    try:
        return _loop(args, folder, name, dirs, interval, retries, manifest, stop)
    finally:
        restore()


def _loop(args: argparse.Namespace, folder: s3.S3Uri, name: str, dirs: list[str], interval: float,
          retries: int, manifest: Path, stop: threading.Event) -> int:
    syncer = Syncer(s3.client(), folder.bucket, folder.key, [Path(d) for d in dirs], manifest,
                    retries=max(0, retries),
                    retry_delay=env_number("ARTIFACTS_RETRY_DELAY", 2.0, minimum=0, unit="seconds"))
    dest = runs.uri_text(folder)
    log(f"run {name}: {', '.join(dirs)} -> {dest} every {interval:g} s (manifest {manifest})")
    seeded = syncer.seed()
    if seeded:
        log(f"{seeded} files are in S3 already (restored from there): not sending them again")
    n = 0
    while True:
        final = stop.is_set() or args.once
        n += 1
        r = syncer.sync()
        failed = f", {len(r.failed)} failed" if r.failed else ""
        log(f"{'final sync' if final else f'round {n}'}: {r.uploaded} uploaded ({_human(r.size)}), "
            f"{r.unchanged} unchanged{failed} -> {dest}")
        if final:
            return 1 if r.failed else 0
        stop.wait(max(0.0, interval))


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.artifacts",
                                     description="Copy training artifacts to S3 (the ECS sidecar).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync", help="copy the directories to S3 every --interval seconds and once more on SIGTERM")
    p.add_argument("--target", help="s3://bucket[/prefix] (env ARTIFACTS_TARGET)")
    p.add_argument("--dir", action="append", help="a directory to copy; repeat (env ARTIFACTS_DIRS, ':'-separated; "
                   f"default {DEFAULT_DIRS})")
    p.add_argument("--interval", type=float, help=f"seconds between syncs (env ARTIFACTS_INTERVAL, default "
                   f"{DEFAULT_INTERVAL:g})")
    p.add_argument("--run_name", "--run-name", dest="run_name",
                   help="the run: its folder is <target>/runs/<name>/ (env RUN_NAME; default the ECS task id)")
    p.add_argument("--run_id", "--run-id", dest="run_id", help=argparse.SUPPRESS)  # the old name of --run_name
    p.add_argument("--manifest", help="local JSON of what was uploaded (env ARTIFACTS_MANIFEST)")
    p.add_argument("--retries", type=int, help="extra tries per file (env ARTIFACTS_RETRIES, default 3)")
    p.add_argument("--once", action="store_true", help="sync once and exit")
    args = parser.parse_args(argv)
    if args.run_id and not args.run_name:
        log("warning: --run_id is the old name of --run_name; use --run_name (--run_id will go in a later release)")
        args.run_name = args.run_id
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
