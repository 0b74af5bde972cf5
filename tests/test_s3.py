"""tfodkit/s3.py against moto's S3 server on 127.0.0.1: URIs, downloads, a prefix synced down, uploads."""

from __future__ import annotations

import pytest

from tfodkit import s3
from tfodkit.errors import UserError


@pytest.fixture
def bucket(moto_s3):
    """An empty bucket "inputs" in the local AWS."""
    moto_s3.create_bucket(Bucket="inputs")
    return moto_s3


@pytest.mark.parametrize("uri,expected", [
    ("s3://my-bucket", ("my-bucket", "")),
    ("s3://my-bucket/", ("my-bucket", "")),
    ("s3://my.bucket-1/records/", ("my.bucket-1", "records/")),
    ("s3://abc/a/b.json", ("abc", "a/b.json")),
])
def test_parse_s3_uri(uri, expected):
    assert tuple(s3.parse_s3_uri(uri)) == expected


@pytest.mark.parametrize("uri,message", [
    ("records/", "records must be an s3:// URI, got 'records/'"),
    ("s3://", "has no bucket name"),
    ("s3://b/records", "bucket name 'b' is 1 character long; S3 bucket names are 3-63 characters"),
    ("s3://" + "a" * 64 + "/x", "is 64 characters long; S3 bucket names are 3-63 characters"),
    ("s3://My_Bucket/x", "use lower-case letters, digits, dots and hyphens"),
    ("s3://-bucket/x", "begin and end with a letter or digit"),
    ("s3://a..b/x", "no two dots in a row"),
    ("s3://192.168.1.1/x", "not an IP address"),
])
def test_a_bad_uri_names_its_problem(uri, message):
    with pytest.raises(UserError) as err:
        s3.parse_s3_uri(uri, "records")
    assert message in str(err.value)


def test_a_file_uri_needs_a_key():
    with pytest.raises(UserError, match="names a bucket, not a file"):
        s3.parse_s3_uri("s3://inputs/", "hparams", need_key=True)
    assert str(s3.parse_s3_uri("s3://inputs/runs").join("training", "a/b.json")) == "s3://inputs/runs/training/a/b.json"
    assert str(s3.parse_s3_uri("s3://inputs").join("x/")) == "s3://inputs/x"


def test_download_file_and_its_errors(bucket, tmp_path):
    bucket.put_object(Bucket="inputs", Key="configs/h.json", Body=b'{"batch_size": 2}')
    assert s3.download_file("s3://inputs/configs/h.json", tmp_path / "h.json").read_bytes() == b'{"batch_size": 2}'
    with pytest.raises(UserError) as err:
        s3.download_file("s3://inputs/configs/nope.json", tmp_path / "nope.json")
    assert str(err.value) == ("download of s3://inputs/configs/nope.json: no such object (check the path with aws s3 "
                              "ls)")
    assert err.value.status == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json"]  # no partial file
    with pytest.raises(UserError, match="no such bucket|no such object"):
        s3.download_file("s3://missing-bucket/h.json", tmp_path / "m.json")


def test_sync_down_copies_once_and_mirrors_removals(bucket, tmp_path):
    for key, body in {"records/training.record": b"t" * 10, "records/testing.record": b"e" * 5,
                      "records/classes.pbtxt": b"item {}", "records/sub/dataset.json": b"{}",
                      "other/x": b"not under the prefix"}.items():
        bucket.put_object(Bucket="inputs", Key=key, Body=body)
    bucket.put_object(Bucket="inputs", Key="records/folder/", Body=b"")  # a console "folder"
    dest = tmp_path / "records"
    logged: list[str] = []
    got = s3.sync_down("s3://inputs/records", dest, log=logged.append)
    assert got == ["classes.pbtxt", "sub/dataset.json", "testing.record", "training.record"]
    assert (dest / "training.record").read_bytes() == b"t" * 10 and (dest / "sub" / "dataset.json").is_file()
    assert logged == [f"s3://inputs/records -> {dest}: 4 files, 4 downloaded"]
    # again: nothing downloaded (same size and mtime), a local extra file and a removed object go
    mtime = (dest / "training.record").stat().st_mtime_ns
    (dest / "stale-00001-of-00002.record").write_bytes(b"old shard")
    bucket.delete_object(Bucket="inputs", Key="records/sub/dataset.json")
    logged.clear()
    s3.sync_down("s3://inputs/records/", dest, log=logged.append)
    assert logged == [f"s3://inputs/records/ -> {dest}: 3 files, 0 downloaded, 2 stale removed"]
    assert sorted(p.name for p in dest.iterdir()) == ["classes.pbtxt", "testing.record", "training.record"]
    assert (dest / "training.record").stat().st_mtime_ns == mtime
    # a changed object is downloaded again
    bucket.put_object(Bucket="inputs", Key="records/testing.record", Body=b"changed")
    s3.sync_down("s3://inputs/records", dest)
    assert (dest / "testing.record").read_bytes() == b"changed"


def test_sync_down_of_an_empty_prefix_fails(bucket, tmp_path):
    with pytest.raises(UserError) as err:
        s3.sync_down("s3://inputs/nothing", tmp_path / "r")
    assert "s3://inputs/nothing is empty (no object under it)" in str(err.value) and err.value.status == 1


def test_upload_dir(bucket, tmp_path):
    (tmp_path / "training" / "eval").mkdir(parents=True)
    (tmp_path / "training" / "run.json").write_text("{}")
    (tmp_path / "training" / "eval" / "events").write_bytes(b"e")
    assert s3.upload_dir(tmp_path / "training", "s3://inputs/runs/1/training") == 2
    keys = sorted(o["Key"] for o in bucket.list_objects_v2(Bucket="inputs")["Contents"])
    assert keys == ["runs/1/training/eval/events", "runs/1/training/run.json"]

