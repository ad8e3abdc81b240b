"""Build what a config's run needs from its corpus: the tokenizer and the train/val token caches.

    python -m llm_tiny.prepare configs/tiny.yaml data.path=corpus/ data.vocab_size=4096

`train` calls the same code when something is missing; running it first shows the corpus
(documents, bytes, tokens, bytes per token) and what building it costs, with a progress bar.
Interrupted, it keeps what it finished: run it again to go on from there. `run` returns those
figures as a `Summary`; `--json` prints them as one JSON object instead of the text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from llm_tiny.config import Config, load_config, split_args
from llm_tiny.data import Corpus, prepare
from llm_tiny.errors import ArgumentParser, cli
from llm_tiny.metrics import peak_rss_mb

EPILOG = """examples:
  python -m llm_tiny.prepare configs/tiny.yaml
  python -m llm_tiny.prepare configs/tiny.yaml data.path=docs/ data.vocab_size=4096 data.workers=2
  python -m llm_tiny.prepare configs/tiny.yaml data.path='books/*.txt.gz' data.on_bad_file=skip
  python -m llm_tiny.prepare configs/tiny.yaml data.path=records.jsonl data.text_field=body
  python -m llm_tiny.prepare configs/tiny.yaml --json --quiet

data.path takes a file, a folder (every file under it, in sorted order) or a glob; .jsonl files
hold one document per line (its text under data.text_field), and any of them may be gzipped.
--json prints the summary as one JSON object on stdout (notes go to stderr), for scripts.
"""


@dataclass(frozen=True)
class Split:
    """One split of the corpus: its documents, bytes of text and token ids."""

    documents: int
    bytes: int
    tokens: int

    def text(self, name: str) -> str:
        """The summary line of this split."""
        ratio = f"{self.bytes / self.tokens:.2f}" if self.tokens else "n/a"
        return (
            f"{name}: {self.documents:,} document(s), {self.bytes / 1e6:,.1f} MB, "
            f"{self.tokens:,} tokens ({ratio} bytes/token)"
        )


@dataclass(frozen=True)
class Summary:
    """What `prepare` built and what it cost: the figures behind its printed summary."""

    path: str
    tokenizer: str
    vocab_size: int
    train: Split
    val: Split
    tokenizer_s: float
    encode_s: float
    peak_memory_mb: float  # this process + its largest worker

    @classmethod
    def of(cls, path: str, corpus: Corpus) -> Summary:
        """The summary of a corpus just prepared (peak memory read now)."""
        st = corpus.stats
        splits = {}
        for name, tf in (("train", corpus.train), ("val", corpus.val)):
            documents, n_bytes = st["splits"][name]
            splits[name] = Split(documents, n_bytes, tf.n)
        return cls(
            path=path,
            tokenizer=str(corpus.tokenizer_path),
            vocab_size=corpus.tokenizer.vocab_size,
            train=splits["train"],
            val=splits["val"],
            tokenizer_s=st["tokenizer_s"],
            encode_s=st["encode_s"],
            peak_memory_mb=peak_rss_mb(children=True),
        )

    def text(self) -> str:
        """The human summary: the tokenizer, each split, then the cost."""
        return "\n".join(
            [
                f"{self.path}: tokenizer {self.tokenizer} ({self.vocab_size} ids)",
                self.train.text("train"),
                self.val.text("val"),
                f"tokenizer {self.tokenizer_s:.1f} s, encoding {self.encode_s:.1f} s, "
                f"peak memory {self.peak_memory_mb:,.0f} MB (this process + its largest worker)",
            ]
        )

    def to_json(self) -> str:
        """The summary as one line of JSON (splits as nested objects)."""
        return json.dumps(dataclasses.asdict(self))


def run(cfg: Config, progress: bool = False, log: Callable[[str], None] = print) -> Summary:
    """Prepare cfg's tokenizer and token caches; their figures."""
    return Summary.of(cfg.data.path, prepare(cfg.data, log=log, progress=progress))


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.prepare [CONFIG] [data.key=value ...] [--json]"""
    p = ArgumentParser(
        prog="python -m llm_tiny.prepare",
        description="Train the tokenizer and encode the token caches a config needs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.vocab_size=4096")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    cfg = load_config(*split_args(a.config, a.overrides))
    log: Callable[[str], None] = (lambda m: print(m, file=sys.stderr)) if a.json else print
    summary = run(cfg, progress=not a.quiet and sys.stderr.isatty(), log=log)
    print(summary.to_json() if a.json else summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
