"""``python -m tfodkit.dataset``."""

from tfodkit.dataset.cli import main

raise SystemExit(main())
