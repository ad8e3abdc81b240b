"""Benchmark data preparation on a big corpus, side by side with HF `tokenizers` and `tiktoken`.

    python -m llm_tiny.bench.prepare --corpus big.txt --vocab 4096 --workers 1,2 [--refs]

Each run is a child process watched by `llm_tiny.bench.memory` (peak RSS and PSS of its whole process
tree): our `prepare` with each worker count (fresh caches each time; the tokenizer and encoding
seconds come from its `--json` summary), then, with --refs, HF `tokenizers` training the same vocabulary
with our split pattern from the file, and `tiktoken` given our merges encoding our training split
(one thread on the whole text, then `encode_ordinary_batch` with 2 threads over the same ~1 MB
pieces our workers get), its ids checked against our cache.
HF and tiktoken are optional installs (`pip install tokenizers tiktoken`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from llm_tiny.bench.memory import watch
from llm_tiny.table import markdown_table

COLUMNS = (
    "run",
    "tokenizer s",
    "encode s",
    "encode MB/s",
    "total s",
    "peak tree RSS MB",
    "peak tree PSS MB",
)


def _prepare(corpus: str, vocab: int, workers: int, folder: Path) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "llm_tiny.prepare",
        "configs/tiny.yaml",
        f"data.path={corpus}",
        f"data.vocab_size={vocab}",
        f"data.workers={workers}",
        f"data.cache_dir={folder}",
        "--quiet",
        "--json",
    ]
    with (folder / "summary.json").open("w+") as out:
        r = watch(cmd, stdout=out)
        out.seek(0)
        text = out.read()
    if r["code"] != 0:
        raise SystemExit(f"prepare failed:\n{text}")
    summary = json.loads(text)  # prepare's own figures, as data
    r.update(tokenizer_s=summary["tokenizer_s"], encode_s=summary["encode_s"])
    return r


def _rate(mb: float, seconds: float) -> str:
    """MB/s, or n/a where no time was measured."""
    return f"{mb / seconds:.2f}" if seconds > 0 else "n/a"


def _child(job: str, *args: str) -> dict[str, float]:
    """Run a job of llm_tiny.bench.references in a watched process: its figures and the tree's peaks."""
    with tempfile.TemporaryFile("w+") as out:
        r = watch([sys.executable, "-m", "llm_tiny.bench.references", job, *args], stdout=out)
        out.seek(0)
        r.update(json.loads(out.read() or "{}"))
    return r


def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.bench.prepare --corpus FILE [--vocab N] [--workers 1,2] [--refs]"""
    p = argparse.ArgumentParser(
        prog="python -m llm_tiny.bench.prepare", description=__doc__.split("\n")[0]
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--workers", default="2", help="comma-separated worker counts")
    p.add_argument("--refs", action="store_true", help="also HF tokenizers and tiktoken")
    a = p.parse_args(argv)
    size = os.path.getsize(a.corpus) / 1e6
    print(f"corpus {a.corpus} ({size:,.0f} MB), vocab {a.vocab}, load {os.getloadavg()[0]:.2f}")
    rows: list[list[str]] = []
    keep = Path(tempfile.mkdtemp(prefix="prepbench-keep-"))  # our tokenizer and cache, for --refs
    try:
        for w in map(int, a.workers.split(",")):
            folder = Path(tempfile.mkdtemp(prefix="prepbench-"))
            r = _prepare(a.corpus, a.vocab, w, folder)
            rows.append(
                [f"ours, {w} worker(s)", f"{r['tokenizer_s']:.1f}", f"{r['encode_s']:.1f}"]
                + [_rate(size, r["encode_s"]), f"{r['s']:.1f}"]
                + [f"{r['rss_mb']:,.0f}", f"{r['pss_mb']:,.0f}"]
            )
            print(f"prepbench: {' | '.join(map(str, rows[-1]))}", file=sys.stderr, flush=True)
            if a.refs and not any(keep.iterdir()):
                shutil.copy(next(folder.glob("tok-*.json")), keep)
                bins = sorted(folder.glob("*.bin"), key=lambda f: f.stat().st_size)
                shutil.copy(bins[-1], keep)  # the training split's cache is the larger
            shutil.rmtree(folder)
        notes = _references(a.corpus, a.vocab, keep, rows) if a.refs else []
    finally:
        shutil.rmtree(keep)
    print("\n" + markdown_table(COLUMNS, rows))
    print("\n".join(["", *notes, f"load after: {os.getloadavg()[0]:.2f}"]))
    return 0


def _references(corpus: str, vocab: int, keep: Path, rows: list[list[str]]) -> list[str]:
    """HF training and tiktoken encoding rows (added to rows); the note on their ids."""
    tok_path, cache = str(next(keep.glob("*.json"))), str(next(keep.glob("*.bin")))
    hf = _child("hf-train", corpus, str(vocab))
    rows.append(
        ["HF tokenizers train", f"{hf['s']:.1f}", "", "", f"{hf['s']:.1f}"]
        + [f"{hf['rss_mb']:,.0f}", f"{hf['pss_mb']:,.0f}"]
    )
    tt = _child("tiktoken-encode", corpus, tok_path, cache)
    for name, s in (
        ("our merges, 1 thread", tt["s"]),
        ("encode_ordinary_batch, 2 threads", tt["s_batch2"]),
    ):
        rows.append([f"tiktoken, {name}", "", f"{s:.1f}", f"{tt['mb'] / s:.2f}", "", "", ""])
    return [
        f"ids equal to ours: {tt['same_ids']} (tiktoken on {tt['mb']:,.0f} MB, our train split)"
    ]


if __name__ == "__main__":
    sys.exit(main())
