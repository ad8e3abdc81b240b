"""GPT-2's own tokenizer: `load_gpt2(folder)` reads its files into a `Tokenizer` with GPT-2's ids.

    tok = load_gpt2("gpt2")              # vocab.json + merges.txt and/or tokenizer.json
    tok.encode("Hello world")            # [15496, 995]
    tok.special_tokens                   # {'<|endoftext|>': 50256}

Byte-level BPE with GPT-2's split pattern and 50,000 merges; the ids equal tiktoken's `gpt2`
encoding on any text. The files are read by `tok.gpt2_files`; `Tokenizer.load` and
`python -m tok.bpe encode|decode --model DIR` take such a folder too.
"""

from __future__ import annotations

from tok.errors import TokenizerError
from tok.gpt2_files import Paths, byte_chars, is_gpt2_folder, read_gpt2
from tok.tokenizer import Tokenizer

__all__ = ["byte_chars", "is_gpt2_folder", "load_gpt2"]


def load_gpt2(folder_or_files: Paths) -> Tokenizer:
    """GPT-2's tokenizer from a folder (vocab.json + merges.txt, else tokenizer.json), a
    tokenizer.json or vocab.json file, or a (vocab.json, merges.txt) pair of paths.

    Any problem is a one-line TokenizerError naming the file: a missing file, corrupt JSON,
    a vocab.json and merges.txt that disagree."""
    data = read_gpt2(folder_or_files)
    try:
        return Tokenizer(*data)
    except TokenizerError as err:  # e.g. a special token inside the merge ids
        raise TokenizerError(f"{folder_or_files}: {err}") from None
