"""Shared pieces of the training command lines: one-line argument errors and list parsing."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["OneLineParser", "parse_cache_steps", "cache_step_key"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`) without the usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {' '.join(message.split())}\n")
        raise SystemExit(2)


def parse_cache_steps(text: str, num_steps: int) -> tuple[int | None, ...]:
    """ "none,3,6" -> (None, 3, 6); each value must be none or an integer in [0, num_steps)."""
    values: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower() == "none":
            values.append(None)
        elif part.isdigit() and int(part) < num_steps:
            values.append(int(part))
        else:
            raise ValueError(f"--cache-at-step {part!r}: allowed values are none or 0..{num_steps - 1}")
    if not values:
        raise ValueError("--cache-at-step: give at least one value (none or 0..steps-1)")
    return tuple(values)


def cache_step_key(value: int | None) -> str:
    """The JSON key of a `cache_at_step` value: "none" or the step number."""
    return "none" if value is None else str(value)
