"""Where the toolkit's own files live (the repository or /opt/tfod in the image)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
BASE_CONFIGS = CONFIGS / "base"
