"""Argument types that check a number at parse time.

Each factory returns an ``argparse`` ``type=`` function: a value that is not a
number, not finite or outside its range raises :class:`argparse.ArgumentTypeError`,
so argparse prints one line naming the option and exits with status 2 before any
work starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"{'above' if low_open else 'at least'} {low:g}"
    if low is None:
        return f"{'below' if high_open else 'at most'} {high:g}"
    low_text = f"{low:g}{' (exclusive)' if low_open else ''}"
    return f"from {low_text} to {high:g}{' (exclusive)' if high_open else ''}"


def bounded(
    kind: type,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float | int]:
    """Return a parse function for a finite ``kind`` (int or float) in ``[low, high]``.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : float, optional
        Inclusive bounds; None leaves that side open.
    low_open, high_open : bool
        Exclude ``low`` or ``high`` itself.

    Returns
    -------
    callable
        ``parse(text)`` returning the number.
    """
    expected = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {expected}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; use {_describe(low, high, low_open, high_open)}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
