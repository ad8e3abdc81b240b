"""Build what a config's run needs from its corpus: the tokenizer and the train/val token caches.

    python -m llm_tiny.prepare configs/tiny.yaml data.path=corpus/ data.vocab_size=4096

`train` calls the same code when something is missing; running it first shows the corpus
(documents, bytes, tokens, bytes per token) and what building it costs, with a progress bar.
Interrupted, it keeps what it finished: run it again to go on from there.
"""

from __future__ import annotations

import argparse
import sys

from llm_tiny.config import load_config, split_args
from llm_tiny.data import prepare
from llm_tiny.errors import ArgumentParser, cli

EPILOG = """examples:
  python -m llm_tiny.prepare configs/tiny.yaml
  python -m llm_tiny.prepare configs/tiny.yaml data.path=docs/ data.vocab_size=4096 data.workers=2
  python -m llm_tiny.prepare configs/tiny.yaml data.path='books/*.txt.gz' data.on_bad_file=skip
  python -m llm_tiny.prepare configs/tiny.yaml data.path=records.jsonl data.text_field=body

data.path takes a file, a folder (every file under it, in sorted order) or a glob; .jsonl files
hold one document per line (its text under data.text_field), and any of them may be gzipped.
"""


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.prepare [CONFIG] [data.key=value ...]"""
    p = ArgumentParser(
        prog="python -m llm_tiny.prepare",
        description="Train the tokenizer and encode the token caches a config needs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.vocab_size=4096")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    cfg = load_config(*split_args(a.config, a.overrides))
    corpus = prepare(cfg.data, progress=not a.quiet and sys.stderr.isatty())
    print(f"{cfg.data.path}: tokenizer {corpus.tokenizer_path} ({corpus.tokenizer.vocab_size} ids)")
    print(corpus.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
