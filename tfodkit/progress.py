"""Speed and ETA of the training and evaluation progress lines.

The first training step and the first evaluation batch include tracing the
tf.function (tens of seconds on CPU), so a rate measured from the start says
hours for a run of minutes. Both lines time from the end of that first unit,
show no rate until a unit after it has run, and no ETA until ETA_AFTER of them
have.
"""

from __future__ import annotations

ETA_AFTER = 5  # units (steps, batches) timed after the first, traced, one before an ETA is shown

# evaluation's tqdm bar: tqdm's own rate and remaining time count the traced first batch, so the bar shows
# the elapsed time and speed_text as its postfix instead
EVAL_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def speed_text(timed: int, seconds: float, remaining: int | None, unit: tuple[str, str] = ("step", "steps")) -> str:
    """``timed`` units done in ``seconds`` since the first (traced) one ended, ``remaining`` still to do (None:
    unknown) -> "2.41 steps/s  ETA 5m12s"; no ETA before ETA_AFTER timed units, no rate before one."""
    if timed <= 0 or seconds <= 0:
        return f"no speed yet (the first {unit[0]} included tracing)"
    rate = timed / seconds
    text = f"{rate:.2f} {unit[1]}/s"
    if timed < ETA_AFTER or remaining is None:
        return text
    return f"{text}  ETA {format_seconds(remaining / rate)}"
