"""Files and directories written whole or not at all.

A file goes to a temporary name beside its target, then is renamed over it. A
directory is built in a staging directory (``staging_dir``) and then put in
place of its target (``replace_dir``). When the target is a mount point (a
Docker volume such as ``-v $PWD/exported_model:/opt/tfod/experiments/exported_model``)
it cannot be renamed (EBUSY), and its parent may be another filesystem; then
the staging directory is made inside the target and its *contents* are swapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    with AtomicFile(path, "w") as out:
        out.write(text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def _mount_points() -> set[str]:
    """Every mount point of this process (bind mounts included), from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
    unescape = lambda s: s.encode().decode("unicode_escape")  # noqa: E731
    return {unescape(line.split()[4]) for line in lines if len(line.split()) > 4}


def is_mount_point(path: Path) -> bool:
    path = Path(path)
    if not path.is_dir():
        return False
    # os.path.ismount misses a bind mount from the same filesystem; mountinfo lists it.
    return os.path.ismount(path) or str(path.resolve()) in _mount_points()


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.staging-"


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh directory to build ``target``'s new contents in.

    On the same filesystem as the target's final place: beside it, or inside it
    when it is a mount point. Removed on any exception; after a successful
    ``replace_dir`` it no longer exists. Stale staging and old dirs of
    ``target`` (left by a killed process) are removed first.
    """
    target = Path(target)
    inside = is_mount_point(target)
    parent = target if inside else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in [*parent.glob(_staging_prefix(target) + "*"), *parent.glob(f".{target.name}.old*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; what is built here is meant to be shared
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(staged: Path, target: Path) -> None:
    """Put the complete directory ``staged`` (from ``staging_dir``) in place of ``target``.

    Nothing old is mixed with the new: every entry of the old target is moved
    aside first, then every entry of ``staged`` is moved in. For an ordinary
    directory this is two renames; for a mount point, per-entry renames inside it.
    """
    staged, target = Path(staged), Path(target)
    if staged.parent != target:  # beside the target: rename the whole directory
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target))
    for entry in target.iterdir():
        if entry not in (staged, old):
            entry.rename(old / entry.name)
    for entry in staged.iterdir():
        entry.rename(target / entry.name)
    staged.rmdir()
    shutil.rmtree(old, ignore_errors=True)


class AtomicFile:
    """A file written under a temporary name beside ``path`` (``.<name>.XXXXXX.tmp``), renamed onto ``path``
    by ``commit()``; ``abort()`` removes it. For writers that stream into a file they hold open.

    As a context manager it gives the open file, commits when the block ends, and aborts on any exception::

        with AtomicFile(path, "wb") as out:
            image.save(out, format="PNG")
    """

    def __init__(self, path: Path, mode: str = "w", **open_args: Any):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            self.file = os.fdopen(fd, mode, **open_args)
        except BaseException:
            os.close(fd)
            Path(self.tmp).unlink(missing_ok=True)
            raise

    def commit(self) -> None:
        try:
            self.file.close()
            os.chmod(self.tmp, 0o644)  # mkstemp makes it private
            os.replace(self.tmp, self.path)
        except BaseException:
            Path(self.tmp).unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        self.file.close()
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False
