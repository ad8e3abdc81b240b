"""The public entry point: `from tok.bpe import Tokenizer, GPT4_PATTERN`, and the command line.

    python -m tok.bpe train data/tiny.txt --vocab 1000 --out tok/bpe.json
    python -m tok.bpe encode --model tok/bpe.json "To be, or not to be"

The names live in their own modules (the class in `tok.tokenizer`, the patterns in
`tok.patterns`, the file format in `tok.codec`) and are re-exported here; the command line
lives in `tok.cli`, which imports `tok.tokenizer`, never this module.
"""

from __future__ import annotations

import sys

from tok.codec import FORMAT, VERSION
from tok.errors import TokenizerError
from tok.patterns import GPT2_PATTERN, GPT4_PATTERN, PATTERNS
from tok.tokenizer import Tokenizer

__all__ = [
    "FORMAT",
    "GPT2_PATTERN",
    "GPT4_PATTERN",
    "PATTERNS",
    "VERSION",
    "Tokenizer",
    "TokenizerError",
]

if __name__ == "__main__":
    from tok.cli import main

    sys.exit(main())
