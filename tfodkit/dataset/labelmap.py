"""TFOD label maps (``StringIntLabelMap`` text): read, validate, write.

Parsing uses TFOD's own compiled proto, so whatever TFOD reads we read; the
validation is stricter than TFOD's and says exactly which item is wrong. No
TensorFlow import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfodkit.errors import UserError


@dataclass(frozen=True)
class LabelMap:
    """Class names and ids (ids from 1), in id order."""

    items: tuple[tuple[int, str], ...]
    path: str = ""

    @property
    def ids(self) -> dict[str, int]:
        return {name: id_ for id_, name in self.items}

    @property
    def names(self) -> dict[int, str]:
        return dict(self.items)

    @classmethod
    def from_names(cls, names) -> LabelMap:
        return cls(tuple((i, n) for i, n in enumerate(names, start=1)))


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def to_text(label_map: LabelMap) -> str:
    """TFOD's usual layout: ``item {\\n  id: 1\\n  name: 'raccoon'\\n}``."""
    return "".join(f"item {{\n  id: {id_}\n  name: {_quote(name)}\n}}\n\n" for id_, name in label_map.items)


def parse_items(text: str, where: str) -> list[tuple[int, str, str]]:
    """(id, name, display_name) of every item, in file order; UserError if it is not a label map."""
    from google.protobuf import text_format
    from object_detection.protos import string_int_label_map_pb2

    proto = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise UserError(f"{where} is not a TFOD label map: {exc}",
                        "write items as: item { id: 1 name: 'raccoon' }") from None
    return [(item.id, item.name, item.display_name) for item in proto.item]


def problems_of(items: list[tuple[int, str, str]], where: str) -> list[str]:
    """Every reason TFOD (or a sane training run) would reject these items, one line each."""
    problems = []
    seen_ids: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    if not items:
        problems.append(f"{where} has no items")
    for id_, name, display in items:
        label = name or display
        if not label:
            problems.append(f"{where}: the item with id {id_} has no name")
        if id_ == 0 and "background" not in (name, display):
            problems.append(f"{where}: class '{label}' has id 0; ids start at 1 (0 is the background)")
        elif id_ < 0:
            problems.append(f"{where}: class '{label}' has a negative id {id_}; ids start at 1")
        if id_ in seen_ids:
            problems.append(f"{where}: id {id_} is used twice ('{seen_ids[id_]}' and '{label}')")
        seen_ids.setdefault(id_, label)
        if name and name in seen_names:
            problems.append(f"{where}: class '{name}' appears twice (ids {seen_names[name]} and {id_})")
        if name:
            seen_names.setdefault(name, id_)
    return problems


def load(path: str | Path) -> LabelMap:
    """Read and validate a label map; UserError naming every bad item."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read label map {path}: {exc.strerror or exc}", "check the --label_map path") from None
    items = parse_items(text, str(path))
    problems = problems_of(items, str(path))
    if problems:
        raise UserError("; ".join(problems), "fix the label map: unique names, unique ids from 1")
    kept = sorted((id_, name or display) for id_, name, display in items if id_ > 0)
    return LabelMap(tuple(kept), str(path))
