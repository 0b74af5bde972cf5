"""How convert and check print their problems: a headline, then each kind with its count and its first few."""

from __future__ import annotations

from collections.abc import Iterable

SHOWN_PER_KIND = 10


def print_problems(headline: str, kinds: Iterable[tuple[str, list[str]]], out, more: str = "") -> None:
    """``problems: none`` when ``kinds`` is empty; else ``headline``, then for each (title, lines) of
    ``kinds`` the title and its first SHOWN_PER_KIND lines, and ``... and N more`` followed by ``more``."""
    kinds = list(kinds)
    if not kinds:
        print("problems: none", file=out)
        return
    print(headline, file=out)
    for title, lines in kinds:
        print(f"  {title}", file=out)
        for line in lines[:SHOWN_PER_KIND]:
            print(f"    {line}", file=out)
        if len(lines) > SHOWN_PER_KIND:
            print(f"    ... and {len(lines) - SHOWN_PER_KIND} more{more}", file=out)
