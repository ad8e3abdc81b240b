"""A pure-Python byte-level BPE tokenizer: train, encode, decode, save, load.

`from tok import Tokenizer` and `from tok.bpe import Tokenizer` give the same class, defined
in `tok.tokenizer`; `python -m tok.bpe` runs the command line (`tok.cli`).
"""

from __future__ import annotations

from tok.errors import TokenizerError
from tok.patterns import GPT2_PATTERN, GPT4_PATTERN, PATTERNS
from tok.tokenizer import Tokenizer

__all__ = ["GPT2_PATTERN", "GPT4_PATTERN", "PATTERNS", "Tokenizer", "TokenizerError"]
