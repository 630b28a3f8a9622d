"""Numbers the service parses by hand (headers, query parameters): ASCII digits only.

``str.isdigit()`` and ``int()`` also take Unicode digits (``²``, ``٣``), underscores,
signs and spaces; a number on the wire is plain ``0-9``, and anything else is refused
the same way on every path.
"""

from __future__ import annotations

import re

__all__ = ["ascii_digits", "is_ascii_digits"]

_DIGITS = re.compile(r"[0-9]+")


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the ASCII digits 0 to 9 and nothing else."""
    return _DIGITS.fullmatch(text) is not None


_SIGNED = re.compile(r"-?[0-9]+")


def ascii_digits(value: object) -> object:
    """A pydantic before-validator: refuse what ``int()`` takes but is not ASCII digits.

    ``²``, ``٣``, ``1_0``, ``+5``, `` 5`` and ``-0`` are refused here; a negative
    number and a non-number go on to the field's own checks and their messages.
    """
    if not isinstance(value, str):
        return value
    if _SIGNED.fullmatch(value) is None:
        try:
            int(value)
        except ValueError:
            return value
    elif not value.startswith("-") or value.strip("-0"):
        return value
    raise ValueError("must be a whole number written with the digits 0-9")
