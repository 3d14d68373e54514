"""Name → implementation tables (OpenLTH style): one lookup with one error for every table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, kind: str, hint: str = "") -> T:
    """``table[name]``, or a ValueError that lists the known names.

    Args:
        table: the registry (architectures, initialisers, methods, activations …).
        name: the requested key.
        kind: what the table holds, singular ("architecture"), for the message.
        hint: an optional sentence appended to the message (how to set the value).

    Raises:
        ValueError: ``name`` is not in ``table``; the message reads
            "Unknown <kind> '<name>'. Known <kind>s: a, b, c." plus the hint.
    """
    try:
        return table[name]
    except (KeyError, TypeError):
        message = f"Unknown {kind} {name!r}. Known {kind}s: {', '.join(sorted(table))}."
        raise ValueError(f"{message} {hint}".strip()) from None
