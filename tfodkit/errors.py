"""One user-error type, the argparse parser and the CLI wrapper that print it on one line."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

USAGE = 2  # bad usage / bad input
FAILURE = 1  # something failed while doing the work
# Stopped by a signal: 128 + its number, as a shell reports it (Ctrl-C, or docker stop / an ECS stop).
SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def on_stop_signals(handler: Callable[[int, object], None]) -> Callable[[], None]:
    """Call ``handler(signum, frame)`` on SIGINT and SIGTERM from now on; returns the function that puts the
    previous handlers back."""
    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_STATUS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


class UserError(Exception):
    """A problem the user can fix: printed as ``error: <what> (<how to fix>)``."""

    def __init__(self, what: str, fix: str | None = None, status: int = USAGE):
        super().__init__(what)
        self.what = what
        self.fix = fix
        self.status = status

    def __str__(self) -> str:
        return f"{self.what} ({self.fix})" if self.fix else self.what


class UsageExit(SystemExit):
    """A usage error already printed on one line: exit status 2 (caught by :func:`cli`)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``error: <msg> (see: <prog> --help)``, exit status 2.

    Every CLI of the toolkit uses it (subcommands inherit it). Under :func:`cli`
    ``main`` returns 2; elsewhere the :class:`UsageExit` ends the process with 2.
    """

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see: {self.prog} --help)", file=sys.stderr)
        raise UsageExit(USAGE)


def training_dir_parser(prog: str, doc: str, model_dir_help: str) -> ArgumentParser:
    """The parser of the tools that work on one training dir (train, evaluate, export).

    Its description is the first paragraph of ``doc`` (the module docstring);
    ``--pipeline_config`` and ``--model_dir`` come first, both required, as in
    TFOD's own scripts.
    """
    parser = ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--pipeline_config", type=Path, required=True)
    parser.add_argument("--model_dir", type=Path, required=True, help=model_dir_help)
    return parser


def did_you_mean(word: str, choices: Sequence[str], n: int = 3) -> str:
    """'did you mean: a, b, c' for the closest choices, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f"did you mean: {', '.join(close)}" if close else ""


def cli(func: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap ``main(argv) -> int`` so a UserError is one line on stderr and an exit code.

    KeyboardInterrupt exits 130 without a traceback; a closed output pipe exits quietly.
    """

    @functools.wraps(func)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return func(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.status
        except UsageExit as exc:
            return exc.code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # output piped into head & co.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return wrapper
