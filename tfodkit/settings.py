"""Defaults and checks that more than one tool applies, and numbers read from environment variables.

Standard library only: readconfig, train, the zoo download, runtask and the
artifacts sidecar all import it.
"""

from __future__ import annotations

import os

from tfodkit.errors import UserError

# Save a checkpoint every this many steps (and always one at the end) unless the hparams say otherwise.
CHECKPOINT_EVERY_N = 1000


def check_batch_size(batch_size: int, replicas: int, devices: str = "replicas", fix: str = "") -> None:
    """UserError unless ``batch_size`` splits evenly over ``replicas`` (TFOD fails at step 0 otherwise).

    ``devices`` names the replicas in the message ("GPUs"); ``fix`` is added to the hint.
    """
    if replicas > 1 and batch_size % replicas:
        suggestion = (batch_size // replicas + 1) * replicas
        raise UserError(f"batch_size {batch_size} is not divisible by the {replicas} {devices}; TFOD would fail at "
                        f"step 0 with: The `global_batch_size` {batch_size} is not divisible by "
                        f"`num_replicas_in_sync` {replicas}",
                        f"set batch_size to a multiple of {replicas}, e.g. {suggestion}" + (f", {fix}" if fix else ""))


def env_number(name: str, default: float, *, minimum: float | None = None, positive: bool = False,
               integer: bool = False, unit: str = "", example: float | None = None) -> float:
    """The number in environment variable ``name`` (``default`` when unset or empty); a one-line UserError
    when it is not a number, not whole with ``integer``, below ``minimum``, or not above 0 with ``positive``.

    ``unit`` names what the number counts ("seconds") in the messages, ``example`` the value their hint
    suggests (default: ``default``).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    example = f"e.g. {name}={default if example is None else example:g}"
    what = f"a whole number{' of ' + unit if unit else ''}" if integer else f"a number{' of ' + unit if unit else ''}"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not {what}", example) from None
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf
        raise UserError(f"{name}={raw!r} is not {what}", example)
    if positive and value <= 0:
        raise UserError(f"{name}={raw!r} must be positive", example)
    if minimum is not None and value < minimum:
        raise UserError(f"{name}={raw!r} must be at least {minimum:g}", example)
    return value
