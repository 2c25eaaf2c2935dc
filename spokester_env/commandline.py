"""Command lines, the project's one pattern for them: a parser whose errors are one line, and one way to
turn a user's error found later into one line and an exit status.

Every entry point (`python -m ...` and the `spokester` command) builds a `CommandLine`, parses, and runs
its work inside `user_errors(prog)`:

    parser = CommandLine(prog="python -m spokester_train.evaluation.evaluate", description=...)
    parser.add_argument("--frames", type=at_least(2), default=32)
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        result = evaluate(...)

A bad option exits with status 2 (argparse's convention), an error found while working (a missing file, an
unusable checkpoint, a bad video) with status 1, Ctrl-C with 130 and SIGTERM (a `kill`, a job scheduler's
stop) with 143; each prints exactly one line on stderr, `prog: error: ...`, never a traceback or a usage
block. SIGTERM is raised as `Terminated`, a KeyboardInterrupt, so everything that cleans up after Ctrl-C
(temporary files, half-written episodes) cleans up after a kill too. stdout stays for the command's output.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from .gl import NoGLContext

__all__ = [
    "USER_ERRORS",
    "CommandLine",
    "Terminated",
    "at_least",
    "device_option",
    "device_option_or_all",
    "more_than",
    "one_line",
    "per_file_command",
    "user_errors",
]

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError, NoGLContext)
"""What a user can cause: bad values and files (checkpoint, video and state errors are ValueErrors), missing
or unwritable paths and full disks (OSError), a missing optional dependency (ImportError), a host where the gl
backend cannot draw (NoGLContext)."""


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (whitespace runs collapsed); its type's name when it has none."""
    text = " ".join(str(error).split())
    return text or (type(error).__name__ if isinstance(error, BaseException) else "")


class CommandLine(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`) without the usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)}\n")
        raise SystemExit(2)


def at_least(low: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse `type` that reads a finite `kind` and requires a value >= `low`."""
    return _bounded(kind, lambda value: value >= low, f">= {low}")


def more_than(low: float, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    """An argparse `type` that reads a finite `kind` and requires a value > `low`."""
    return _bounded(kind, lambda value: value > low, f"> {low}")


def _bounded(kind: Callable[[str], float], allowed: Callable[[float], bool], bound: str) -> Callable[[str], float]:
    def parse(text: str):
        expected = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def device_option(text: str) -> str:
    """An argparse `type` for a torch device: `cpu`, `cuda` or `cuda:N`, where CUDA must be present (checked
    with torch, imported only for a CUDA name) — so a bad device stops the command before any work."""
    kind, colon, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (colon and (kind == "cpu" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text}: no CUDA device here (torch.cuda.is_available() is False); use cpu"
            )
        if colon and int(index) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


def device_option_or_all(text: str) -> str:
    """`device_option`, or `all` (every device present)."""
    if text == "all":
        return text
    try:
        return device_option(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (or all)") from None


device_option.__name__ = device_option_or_all.__name__ = "device"  # argparse names the type in its messages


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM inside `user_errors`: cleaned up like Ctrl-C, exit status 143."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def user_errors(prog: str, *extra: type[BaseException]) -> Iterator[None]:
    """Run a command's work: a user's error (`USER_ERRORS` and `extra`) becomes one line on stderr and exit
    status 1, Ctrl-C a line and status 130, SIGTERM (raised as `Terminated`) a line and status 143."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        yield
    except Terminated:
        sys.stderr.write(f"{prog}: terminated\n")
        raise SystemExit(128 + signal.SIGTERM) from None
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        raise SystemExit(130) from None
    except (*USER_ERRORS, *extra) as error:
        sys.stderr.write(f"{prog}: error: {one_line(error)}\n")
        raise SystemExit(1) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def per_file_command(
    argv: Sequence[str] | None, *, prog: str, doc: str, files: str, help: str, work: Callable[[str], object]
) -> None:
    """The command line of a tool that works on each of one or more files and prints one line per file,
    the path it wrote (the model-card commands): `prog FILE [FILE ...]`, `work(FILE)` inside
    `user_errors`, the first line of `doc` as the description."""
    parser = CommandLine(prog=prog, description=doc.splitlines()[0])
    parser.add_argument(files, nargs="+", help=help)
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        for path in getattr(args, files):
            print(work(path), flush=True)
