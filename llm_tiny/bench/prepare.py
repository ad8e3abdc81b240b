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
    rows = [
        f"corpus {a.corpus} ({size:,.0f} MB), vocab {a.vocab}, load {os.getloadavg()[0]:.2f}",
        "",
        "| run | tokenizer s | encode s | encode MB/s | total s | peak tree RSS MB | peak tree PSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    tok_path = cache = ""
    for w in map(int, a.workers.split(",")):
        folder = Path(tempfile.mkdtemp(prefix="prepbench-"))
        r = _prepare(a.corpus, a.vocab, w, folder)
        rows.append(
            f"| ours, {w} worker(s) | {r['tokenizer_s']:.1f} | {r['encode_s']:.1f} | "
            f"{_rate(size, r['encode_s'])} | {r['s']:.1f} | {r['rss_mb']:,.0f} | {r['pss_mb']:,.0f} |"
        )
        print(rows[-1], flush=True)
        if a.refs and not tok_path:
            keep = Path(tempfile.mkdtemp(prefix="prepbench-keep-"))
            tok_path = str(shutil.copy(next(folder.glob("tok-*.json")), keep))
            bins = sorted(folder.glob("*.bin"), key=lambda f: f.stat().st_size)
            cache = str(shutil.copy(bins[-1], keep))  # the training split's cache is the larger
        shutil.rmtree(folder)
    if a.refs:
        hf = _child("hf-train", a.corpus, str(a.vocab))
        rows.append(
            f"| HF tokenizers train | {hf['s']:.1f} | | | {hf['s']:.1f} | {hf['rss_mb']:,.0f} | {hf['pss_mb']:,.0f} |"
        )
        tt = _child("tiktoken-encode", a.corpus, tok_path, cache)
        rows.append(
            f"| tiktoken, our merges, 1 thread | | {tt['s']:.1f} | {tt['mb'] / tt['s']:.2f} | | | |"
        )
        rows.append(
            f"| tiktoken, encode_ordinary_batch, 2 threads | | {tt['s_batch2']:.1f} | "
            f"{tt['mb'] / tt['s_batch2']:.2f} | | | |"
        )
        rows.append(
            f"\nids equal to ours: {tt['same_ids']} (tiktoken on {tt['mb']:,.0f} MB, our train split)"
        )
    rows.append(f"load after: {os.getloadavg()[0]:.2f}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
