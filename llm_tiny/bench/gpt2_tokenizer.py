"""Encode with GPT-2's 50k vocabulary beside tiktoken's `gpt2` encoding, same text, same ids.

    python -m llm_tiny.bench.gpt2_tokenizer --model tests/data/gpt2 --corpus data/tinyshakespeare.txt

tiktoken is built from the same vocab.json + merges.txt with its own `gpt2` split pattern (what
`tiktoken.get_encoding("gpt2")` downloads); both are checked to give the same ids. Warm: the median
of repeated calls on one tokenizer (its chunk caches full). Cold: the first call of a freshly
loaded tokenizer, the median over --repeats fresh ones. One thread each (tiktoken's
`encode_ordinary`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from llm_tiny.bench.tokenizer import fmt_rate, race
from tok.cli import Parser, UsageError
from tok.errors import TokenizerError
from tok.gpt2 import load_gpt2


def tiktoken_gpt2(folder: Path) -> Any:
    """tiktoken's `gpt2` encoding from GPT-2's files in `folder`."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public

    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(folder / "merges.txt"), encoder_json_file=str(folder / "vocab.json")
    )
    specials = {"<|endoftext|>": 50256}
    return tiktoken.Encoding(
        "gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks, special_tokens=specials
    )


def report(folder: Path, corpus: Path, repeats: int) -> str:
    """Measure and return the markdown table (a note line, then the rows)."""
    text = corpus.read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    start = time.perf_counter()
    ours = load_gpt2(folder)
    load_s = time.perf_counter() - start
    ref = tiktoken_gpt2(folder)
    same = ours.encode(text) == ref.encode_ordinary(text)
    warm = race(
        {"ours": lambda: ours.encode(text), "tiktoken": lambda: ref.encode_ordinary(text)},
        repeats,
        min_seconds=0.2,
    )
    cold = []
    for _ in range(repeats):
        fresh = load_gpt2(folder)
        start = time.perf_counter()
        fresh.encode(text)
        cold.append(time.perf_counter() - start)
    ours_w, ref_w, ours_c = warm["ours"] or 0.0, warm["tiktoken"] or 0.0, statistics.median(cold)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join(
        [
            f"GPT-2 tokenizer ({folder}, 50,000 merges) on `{corpus}` ({n_bytes:,} B); "
            f"median of {repeats}; ids equal to tiktoken: {'yes' if same else 'NO'}; "
            f"load average {load:.1f} on {os.cpu_count()} CPUs; Python {platform.python_version()}.",
            "",
            "| task | ours (pure Python) | tiktoken (Rust) | ours / tiktoken speed |",
            "| --- | --- | --- | --- |",
            f"| encode, warm caches | {fmt_rate(n_bytes, ours_w)} | {fmt_rate(n_bytes, ref_w)} "
            f"| {ref_w / ours_w:.2f}× |",
            f"| encode, first call of a fresh tokenizer | {fmt_rate(n_bytes, ours_c)} "
            f"| {fmt_rate(n_bytes, ref_w)} | {ref_w / ours_c:.2f}× |",
            f"| load vocab.json + merges.txt | {load_s:.2f} s | | |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns the exit code (2: bad input)."""
    parser = Parser(
        prog="python -m llm_tiny.bench.gpt2_tokenizer",
        description="GPT-2's tokenizer beside tiktoken's gpt2 encoding.",
        epilog="example:\n  python -m llm_tiny.bench.gpt2_tokenizer --model tests/data/gpt2 "
        "--corpus data/tinyshakespeare.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, metavar="DIR", help="a GPT-2 folder")
    parser.add_argument("--corpus", type=Path, default=Path("data/tinyshakespeare.txt"))
    parser.add_argument("--repeats", type=int, default=5, metavar="N", help="default: 5")
    try:
        args = parser.parse_args(argv)
        if args.repeats < 1:
            raise UsageError("--repeats must be at least 1")
        print(report(args.model, args.corpus, args.repeats))
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, TokenizerError, OSError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
