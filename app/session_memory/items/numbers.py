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


def ascii_digits(value: object) -> object:
    """A pydantic before-validator: a query string must be ASCII digits (else 422).

    Values that are not strings pass through to the field's own validation.
    """
    if isinstance(value, str) and not is_ascii_digits(value):
        raise ValueError("must be a whole number written with the digits 0-9")
    return value
