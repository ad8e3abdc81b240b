"""A pure-Python byte-level BPE tokenizer: train, encode, decode, save, load.

`from tok import Tokenizer` works; the names load lazily so that `python -m tok.bpe`
runs its module once, as __main__, without a second copy imported by the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GPT2_PATTERN", "GPT4_PATTERN", "PATTERNS", "Tokenizer", "TokenizerError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("tok.bpe"), name)
    raise AttributeError(f"module 'tok' has no attribute {name!r}")
