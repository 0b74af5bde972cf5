"""The run's TFRecord files read without TensorFlow: the test images in the records, the TensorBoard events.

Importing TensorFlow takes seconds, longer than the rest of the report; the framing is simple
and the protos come with tensorboard. A TFRecord file is a run of records, each: its length
(uint64, little-endian), the length's masked CRC-32C (uint32), the data, the data's masked
CRC-32C (uint32). The CRCs are not checked (the standard library has no CRC-32C, and the report
only looks); a file that ends inside a record (events still being written) ends at its last
whole record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HEADER = struct.Struct("<QI")  # length, its masked CRC


def records(path: Path, wanted: set[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(index, data) of every record of path, or of the wanted indices only (the others are skipped unread)."""
    last = max(wanted) if wanted else None
    with open(path, "rb") as f:
        index = 0
        while (head := f.read(HEADER.size)) and len(head) == HEADER.size:
            length = HEADER.unpack(head)[0]
            if wanted is None or index in wanted:
                data = f.read(length)
                if len(data) < length or len(f.read(4)) < 4:
                    return
                yield index, data
            else:
                f.seek(length + 4, 1)
            if last is not None and index >= last:
                return
            index += 1


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of a protobuf message's wire format: a length-delimited value as a view."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        kind = key & 7
        if kind == 0:
            value, i = _varint(data, i)
        elif kind == 2:
            length, i = _varint(data, i)
            value, i = data[i : i + length], i + length
        elif kind in (1, 5):
            value, i = data[i : i + (8 if kind == 1 else 4)], i + (8 if kind == 1 else 4)
        else:
            raise ValueError(f"protobuf wire type {kind} is not in a tf.train.Example")
        yield key >> 3, value


def example_bytes(data: bytes, name: str) -> bytes | None:
    """The first value of a tf.train.Example's bytes feature, read from its wire format.

    Example {features = 1} -> Features {map<string, Feature> feature = 1: entries {key = 1, value = 2}}
    -> Feature {bytes_list = 1} -> BytesList {repeated bytes value = 1}. (The Example proto comes
    only with TensorFlow, whose import would cost more than the whole report.)
    """
    wanted = name.encode()
    for number, features in _fields(memoryview(data)):
        if number != 1:
            continue
        for number, entry in _fields(features):
            if number != 1:
                continue
            parts = dict(_fields(entry))
            if bytes(parts.get(1, b"")) != wanted or 2 not in parts:
                continue
            for number, bytes_list in _fields(parts[2]):
                if number == 1:
                    return next((bytes(v) for n, v in _fields(bytes_list) if n == 1), None)
    return None


def encoded_images(path: Path, indices: set[int]) -> dict[int, bytes]:
    """image/encoded of the records at these indices of a record file of tf.train.Examples, by index."""
    out = {}
    for index, data in records(path, indices):
        if (encoded := example_bytes(data, "image/encoded")) is not None:
            out[index] = encoded
    return out


# TensorProto dtype -> (numpy dtype, the repeated field holding the values when tensor_content is empty)
NUMBERS = {1: ("<f4", "float_val"), 2: ("<f8", "double_val"), 3: ("<i4", "int_val"), 9: ("<i8", "int64_val")}


def _number(tensor) -> float | None:
    """The value of a scalar numeric TensorProto, else None."""
    if tensor.tensor_shape.dim or tensor.dtype not in NUMBERS:
        return None
    dtype, field = NUMBERS[tensor.dtype]
    if tensor.tensor_content:
        return float(np.frombuffer(tensor.tensor_content, dtype)[0])
    values = getattr(tensor, field)
    return float(values[0]) if values else None


def _points(events_dir: Path) -> Iterator[tuple[str, int, float, float]]:
    """(tag, step, wall time, value) of every scalar summary in events_dir's event files, file by file in name
    order (their names begin with the time they were opened).

    Both forms: TF2's tf.summary.scalar (a scalar tensor) and TF1's simple_value.
    """
    from tensorboard.compat.proto.event_pb2 import Event

    for path in sorted(events_dir.glob("events.out.tfevents.*")):
        for _, data in records(path):
            event = Event.FromString(data)
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                number = (
                    value.simple_value
                    if kind == "simple_value"
                    else _number(value.tensor)
                    if kind == "tensor"
                    else None
                )
                if number is not None:
                    yield value.tag, event.step, event.wall_time, number


def scalars(events_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar summary in events_dir's event files: tag -> (steps, values), in step order.

    After a resumed training the later file's value of a step wins.
    """
    per_tag: dict[str, dict[int, float]] = {}
    for tag, step, _, number in _points(events_dir):
        per_tag.setdefault(tag, {})[step] = number
    out = {}
    for tag, points in per_tag.items():
        steps = np.array(sorted(points))
        out[tag] = (steps, np.array([points[s] for s in steps], float))
    return out


def wall_times(events_dir: Path, tag: str = "Loss/total_loss") -> dict[int, float]:
    """{step: wall time} of the scalar ``tag`` in events_dir's event files (a training dir's ``train/``, of this
    toolkit's training or of model_main_tf2's: both write the losses there after a chunk of steps)."""
    return {step: wall for name, step, wall, _ in _points(events_dir) if name == tag}
