"""TFOD label maps (``StringIntLabelMap`` text): the one reader, validator and writer of the toolkit.

Every tool that reads a label map (dataset convert and check, readconfig,
predict) reads it here, by one rule set:

- Parsing uses TFOD's own compiled proto, so whatever TFOD reads we read.
- A class is named by its ``name``, or by its ``display_name`` when it has no
  ``name``: that name identifies the class (the class text in the records).
  It is shown as its ``display_name``, or its ``name`` when it has none, as
  TFOD's evaluation and visualisation do (e.g. COCO's ``name: "/m/01g317"
  display_name: "person"`` is drawn as "person"). TFOD's decoder matches a
  record's class text against both.
- Ids start at 1; id 0 is TFOD's background and is allowed only for an item
  named "background", which is then ignored. Gaps in the ids are allowed, as
  TFOD allows them: the model predicts ``max id`` classes (COCO's 80 classes
  have ids up to 90, and the zoo's COCO models have ``num_classes: 90``).
- Errors, each naming the item: no items, an item without a name, a negative
  id, id 0 for anything but the background, an id used twice, a name used
  twice.

No TensorFlow import here (the proto module is TFOD's plain protobuf).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfodkit.errors import UserError

FIX = "fix the label map: unique names, unique ids from 1"


@dataclass(frozen=True)
class LabelMap:
    """Class names and ids (ids from 1, gaps allowed), in id order."""

    items: tuple[tuple[int, str], ...]  # (id, name)
    path: str = ""
    display_names: tuple[tuple[int, str], ...] = ()  # (id, display_name) of the items that have one

    @property
    def ids(self) -> dict[str, int]:
        """name -> id, the display names included (TFOD's decoder maps a record's class text by either)."""
        return {**{name: id_ for id_, name in self.display_names}, **{name: id_ for id_, name in self.items}}

    @property
    def names(self) -> dict[int, str]:
        return dict(self.items)

    @property
    def shown(self) -> dict[int, str]:
        """id -> the name shown to people: display_name when there is one, else name."""
        return {**self.names, **dict(self.display_names)}

    @property
    def num_classes(self) -> int:
        """The classes a model of this label map predicts: its largest id (gaps included)."""
        return max((id_ for id_, _ in self.items), default=0)

    @classmethod
    def from_names(cls, names) -> LabelMap:
        return cls(tuple((i, n) for i, n in enumerate(names, start=1)))


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def to_text(label_map: LabelMap) -> str:
    """TFOD's usual layout: ``item {\\n  id: 1\\n  name: 'raccoon'\\n}``, display names kept."""
    display = dict(label_map.display_names)
    return "".join(f"item {{\n  id: {id_}\n  name: {_quote(name)}\n"
                   + (f"  display_name: {_quote(display[id_])}\n" if id_ in display else "") + "}\n\n"
                   for id_, name in label_map.items)


def parse_items(text: str, where: str) -> list[tuple[int, str, str]]:
    """(id, name, display_name) of every item, in file order; UserError if it is not a label map."""
    from google.protobuf import text_format
    from object_detection.protos import string_int_label_map_pb2

    proto = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise UserError(f"{where} is not a TFOD label map: {str(exc).splitlines()[0].replace(' : ', ': ', 1)}",
                        "write items as: item { id: 1 name: 'raccoon' }") from None
    return [(item.id, item.name, item.display_name) for item in proto.item]


def _is_background(id_: int, name: str, display: str) -> bool:
    return id_ == 0 and "background" in (name, display)


def problems_of(items: list[tuple[int, str, str]], where: str) -> list[str]:
    """Every reason the rules above reject these items, one line each (empty: a valid label map)."""
    problems = []
    seen_ids: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    if not [item for item in items if not _is_background(*item)]:
        problems.append(f"{where} has no items" if not items else f"{where} has only the background (id 0)")
    for id_, name, display in items:
        label = name or display
        if not label:
            problems.append(f"{where}: the item with id {id_} has no name")
        if id_ == 0 and not _is_background(id_, name, display):
            problems.append(f"{where}: class '{label}' has id 0; ids start at 1 (0 is the background)")
        elif id_ < 0:
            problems.append(f"{where}: class '{label}' has a negative id {id_}; ids start at 1")
        if id_ in seen_ids:
            problems.append(f"{where}: id {id_} is used twice ('{seen_ids[id_]}' and '{label}')")
        seen_ids.setdefault(id_, label)
        if label and label in seen_names:
            problems.append(f"{where}: class '{label}' appears twice (ids {seen_names[label]} and {id_})")
        if label:
            seen_names.setdefault(label, id_)
    return problems


def from_items(items: list[tuple[int, str, str]], where: str = "") -> LabelMap:
    """The LabelMap of these items, the background dropped, in id order (of any items: the dataset check
    validates records against a label map with problems as it is written)."""
    kept = sorted(item for item in items if not _is_background(*item))
    return LabelMap(tuple((id_, name or display) for id_, name, display in kept), where,
                    tuple((id_, display) for id_, name, display in kept if name and display))


def read_text(path: str | Path, fix: str = "check the label map's path") -> str:
    """The label map file's text; UserError (with ``fix``) when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"label map {path} {'is not a file' if path.exists() else 'does not exist'}", fix)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read label map {path}: {exc.strerror or exc}", fix) from None
    except UnicodeDecodeError as exc:
        raise UserError(f"label map {path} is not UTF-8 text ({exc.reason} at byte {exc.start})", fix) from None


def load(path: str | Path, fix: str = "check the label map's path") -> LabelMap:
    """Read and validate a label map; one UserError line naming every bad item.

    ``fix`` is the hint when the file cannot be read (e.g. which flag gave the path).
    """
    items = parse_items(read_text(path, fix), str(path))
    problems = problems_of(items, str(path))
    if problems:
        raise UserError("; ".join(problems), FIX)
    return from_items(items, str(path))
