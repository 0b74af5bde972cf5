"""Dataset preparation: annotations to TFRecords (``convert``) and a check of records (``check``).

``python -m tfodkit.dataset convert|check ...`` (or ``python -m tfodkit dataset ...``).
The CLI lives in :mod:`tfodkit.dataset.cli`; importing this package stays light.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from tfodkit.dataset.cli import main as cli_main

    return cli_main(argv)
