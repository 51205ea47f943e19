"""argparse types shared by every command: numbers are checked at the border, so NaN, inf and values out of
range are usage errors (exit 2) naming the value, never something a run discovers later (a NaN time budget
that never ends, a NaN threshold that empties every prediction)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


def finite_float(minimum: float | None = None, maximum: float | None = None, above_minimum: bool = False,
                 unit: str = "") -> Callable[[str], float]:
    """A finite number within [minimum, maximum] (``above_minimum``: strictly greater than minimum)."""
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number{suffix}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number{suffix}, got {text}")
        if minimum is not None and (value <= minimum if above_minimum else value < minimum):
            raise argparse.ArgumentTypeError(f"expected a number {'>' if above_minimum else '>='} {minimum:g}{suffix}, "
                                             f"got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a number <= {maximum:g}{suffix}, got {text}")
        return value

    return parse


def positive_float(unit: str = "") -> Callable[[str], float]:
    """A finite number > 0."""
    return finite_float(0.0, above_minimum=True, unit=unit)
