"""The toolkit's one S3 module: URIs, downloads, a prefix synced down, a directory uploaded.

boto3 finds credentials and the endpoint as the aws CLI does: the environment
(``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID`` ..., ``AWS_ENDPOINT_URL``, which is how
the tests point it at a moto server on 127.0.0.1), ``~/.aws``, an ECS task
role. Every failure is a one-line :class:`~tfodkit.errors.UserError` naming the
object and the likely fix. boto3 is imported on first use, so parsing a URI
costs nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tfodkit.errors import FAILURE, UserError
from tfodkit.fsutil import AtomicFile

# S3's naming rules for buckets (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class S3Uri(NamedTuple):
    bucket: str
    key: str  # "" for the bucket itself; a prefix keeps its slashes as given

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """This URI as a prefix, with parts below it: s3://b/p + x/y -> s3://b/p/x/y."""
        return S3Uri(self.bucket, "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/")))


def bucket_problem(bucket: str) -> str | None:
    """What is wrong with an S3 bucket name, or None when it is valid."""
    if not 3 <= len(bucket) <= 63:
        return (f"bucket name {bucket!r} is {len(bucket)} character{'' if len(bucket) == 1 else 's'} long; S3 bucket "
                "names are 3-63 characters")
    if not _BUCKET_CHARS.match(bucket):
        return (f"bucket name {bucket!r} is not valid; S3 bucket names use lower-case letters, digits, dots and "
                "hyphens, and begin and end with a letter or digit")
    if ".." in bucket or _IPV4.match(bucket):
        return f"bucket name {bucket!r} is not valid (no two dots in a row, not an IP address)"
    return None


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3_uri(uri: str, what: str = "S3 URI", need_key: bool = False) -> S3Uri:
    """``s3://bucket[/key]`` -> S3Uri, checked against S3's bucket naming rules.

    ``what`` names the value in the message (e.g. "records"); with ``need_key`` a
    bare bucket is refused (an object is needed, not a bucket).
    """
    if not is_s3(uri):
        raise UserError(f"{what} must be an s3:// URI, got {uri!r}", "write it as s3://<bucket>/<key>")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise UserError(f"{what} {uri!r} has no bucket name", "write it as s3://<bucket>/<key>")
    problem = bucket_problem(bucket)
    if problem:
        raise UserError(f"{what} {uri!r}: {problem}", "check the bucket's name in the S3 console or with aws s3 ls")
    if need_key and not key.strip("/"):
        raise UserError(f"{what} {uri!r} names a bucket, not a file", "pass s3://<bucket>/<path to the file>")
    return S3Uri(bucket, key)


def client(profile: str | None = None, **kwargs: Any):
    """A boto3 S3 client configured from the environment (AWS_ENDPOINT_URL included), or from ``profile``."""
    import boto3

    if profile:
        return boto3.Session(profile_name=profile).client("s3", **kwargs)
    return boto3.client("s3", **kwargs)


def _failure(action: str, uri: S3Uri | str, exc: Exception) -> UserError:
    """One line for a boto3/botocore exception, with the fix that usually applies."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return UserError(f"{action} {uri}: no AWS credentials", "set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or run on a role that can read it", status=FAILURE)
    if isinstance(exc, EndpointConnectionError):
        return UserError(f"{action} {uri}: cannot reach S3 ({exc})", "check the network, the region and "
                         "AWS_ENDPOINT_URL", status=FAILURE)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return UserError(f"{action} {uri}: no such object", "check the path with aws s3 ls", status=FAILURE)
        if code == "NoSuchBucket":
            return UserError(f"{action} {uri}: no such bucket", "check the bucket name", status=FAILURE)
        if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return UserError(f"{action} {uri}: access denied ({code})", "check the credentials and the bucket "
                             "policy (s3:GetObject, s3:ListBucket, s3:PutObject)", status=FAILURE)
        return UserError(f"{action} {uri}: {code or 'error'}: {error.get('Message', exc)}", "see the AWS error "
                         "above", status=FAILURE)
    return UserError(f"{action} {uri}: {type(exc).__name__}: {exc}", "check the network and run again",
                     status=FAILURE)


def _aws_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError, S3TransferFailedError, S3UploadFailedError


def _download_atomic(s3, uri: S3Uri, dest: Path, mtime: float | None = None) -> None:
    """Download one object to dest through a temporary file beside it (never half a file)."""
    with AtomicFile(dest, "wb") as out:
        s3.download_fileobj(uri.bucket, uri.key, out)
    if mtime is not None:
        os.utime(dest, (mtime, mtime))


def download_file(uri: str | S3Uri, dest: Path, s3=None) -> Path:
    """One object to the local file ``dest``; returns dest."""
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri, need_key=True)
    s3 = s3 or client()
    try:
        _download_atomic(s3, uri, Path(dest))
    except _aws_errors() as exc:
        raise _failure("download of", uri, exc) from None
    return Path(dest)


def _objects(s3, uri: S3Uri) -> Iterator[dict]:
    prefix = uri.key.rstrip("/") + "/" if uri.key.strip("/") else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):  # "folder" markers of the console
                yield {**obj, "Relative": obj["Key"][len(prefix):]}


def exists(uri: str | S3Uri, s3=None) -> bool:
    """Is there an object at ``uri``? (False for a missing object; other errors are raised.)"""
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri, need_key=True)
    from botocore.exceptions import ClientError

    s3 = s3 or client()
    try:
        s3.head_object(Bucket=uri.bucket, Key=uri.key)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _failure("check of", uri, exc) from None
    except _aws_errors() as exc:
        raise _failure("check of", uri, exc) from None


def list_prefix(uri: str | S3Uri, s3=None, times: bool = False) -> list[tuple]:
    """(path relative to the prefix, size) of every object under the prefix ``uri``, with ``times`` also its
    LastModified (epoch seconds); [] when there is none."""
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    s3 = s3 or client()
    try:
        if times:
            return [(o["Relative"], o["Size"], o["LastModified"].timestamp()) for o in _objects(s3, uri)]
        return [(obj["Relative"], obj["Size"]) for obj in _objects(s3, uri)]
    except _aws_errors() as exc:
        raise _failure("listing of", uri, exc) from None


def download_prefix(uri: str | S3Uri, dest: Path, s3=None, skip: Callable[[str], bool] | None = None) -> list[str]:
    """Every object under the prefix ``uri`` (but those whose relative path ``skip`` accepts) into ``dest``.

    Unlike :func:`sync_down` nothing local is removed and an empty prefix is no
    error; returns the relative paths downloaded.
    """
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    dest = Path(dest)
    s3 = s3 or client()
    done: list[str] = []
    try:
        for obj in _objects(s3, uri):
            if skip and skip(obj["Relative"]):
                continue
            _download_atomic(s3, S3Uri(uri.bucket, obj["Key"]), dest / obj["Relative"],
                             obj["LastModified"].timestamp())
            done.append(obj["Relative"])
    except _aws_errors() as exc:
        raise _failure("download of", uri, exc) from None
    return done


def sync_down(uri: str | S3Uri, dest: Path, s3=None, log: Callable[[str], None] | None = None) -> list[str]:
    """Make ``dest`` a copy of everything under the prefix ``uri``; returns the relative paths.

    Like ``aws s3 sync`` plus removal: an object whose local copy has the same
    size and modification time is not downloaded again (each download gets the
    object's LastModified as its mtime), and local files that are no longer
    under the prefix are removed, so stale shards do not linger. An empty
    prefix is an error.
    """
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    dest = Path(dest)
    s3 = s3 or client()
    try:
        objects = list(_objects(s3, uri))
        if not objects:
            raise UserError(f"{uri} is empty (no object under it)", "upload the records there first, e.g. aws s3 "
                            f"sync RECORDS_DIR {uri}", status=FAILURE)
        fetched = 0
        for obj in objects:
            local = dest / obj["Relative"]
            mtime = obj["LastModified"].timestamp()
            if local.is_file() and local.stat().st_size == obj["Size"] and local.stat().st_mtime == mtime:
                continue
            _download_atomic(s3, S3Uri(uri.bucket, obj["Key"]), local, mtime)
            fetched += 1
    except _aws_errors() as exc:
        raise _failure("sync of", uri, exc) from None
    wanted = {obj["Relative"] for obj in objects}
    removed = 0
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel not in wanted:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if log:
        log(f"{uri} -> {dest}: {len(objects)} files, {fetched} downloaded"
            + (f", {removed} stale removed" if removed else ""))
    return sorted(wanted)


def already_uploaded(st: os.stat_result, size: int, modified: float) -> bool:
    """Is the object of ``size`` bytes, last modified at ``modified`` (epoch seconds), the upload of the local
    file of stat ``st``: the same size, and not older than the file?"""
    return size == st.st_size and modified >= st.st_mtime


def upload_dir(local: Path, uri: str | S3Uri, s3=None, changed_only: bool = False) -> int:
    """Every file under ``local`` to ``uri``/<relative path>; returns the number of files sent.

    With ``changed_only`` a file is not sent when the object already there has
    its size and is not older than it (the artifacts sidecar sent it).
    """
    uri = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    local = Path(local)
    s3 = s3 or client()
    count = 0
    try:
        there = {o["Relative"]: o for o in _objects(s3, uri)} if changed_only else {}
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            rel = path.relative_to(local).as_posix()
            st, obj = path.stat(), there.get(rel)
            if obj and already_uploaded(st, obj["Size"], obj["LastModified"].timestamp()):
                continue
            s3.upload_file(str(path), uri.bucket, uri.join(rel).key)
            count += 1
    except _aws_errors() as exc:
        raise _failure("upload to", uri, exc) from None
    return count
