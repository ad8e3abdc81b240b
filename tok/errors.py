"""The tokenizer's one error type and the integer check every validation uses."""

from __future__ import annotations


class TokenizerError(ValueError):
    """A tokenizer file, merge list, special token or id that is not valid."""


def is_int(x: object) -> bool:
    """An int that is not a bool (JSON's true and false are no ids)."""
    return isinstance(x, int) and not isinstance(x, bool)
