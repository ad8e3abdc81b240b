"""Shared fixtures: a small corpus, a tokenizer trained on it once per session, and a tiny run config."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from llm_tiny.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "tiny.txt"
CORPUS_BYTES = 16_000  # enough for a few hundred 16-token windows, small enough to stay fast


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test on one torch thread: tiny ops on a shared 2-core CPU run several times faster so,
    and results don't depend on the machine's core count. A test may set more itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_text() -> str:
    """The first CORPUS_BYTES of the shipped corpus, cut at a line end."""
    text = SHIPPED.read_text(encoding="utf-8")[:CORPUS_BYTES]
    return text[: text.rfind("\n") + 1]


@pytest.fixture(scope="session")
def session_tokenizer(tmp_path_factory: pytest.TempPathFactory, corpus_text: str) -> Path:
    """A 300-token tokenizer trained once on corpus_text, saved as JSON."""
    from tok.bpe import Tokenizer

    path = tmp_path_factory.mktemp("tok") / "tok300.json"
    Tokenizer.train(corpus_text, 300).save(path)
    return path


@pytest.fixture
def corpus(tmp_path: Path, corpus_text: str) -> Path:
    """corpus_text written to a file in this test's folder."""
    p = tmp_path / "corpus.txt"
    p.write_text(corpus_text, encoding="utf-8")
    return p


TINY_YAML = """\
model: {block_size: 16, n_layer: 1, n_head: 2, n_embd: 32}
data: {vocab_size: 300}
train:
  batch_size: 8
  max_steps: 20
  warmup_steps: 4
  lr: 3.0e-3
  min_lr: 3.0e-4
  eval_interval: 10
  eval_batches: 2
  log_interval: 5
  threads: 1
  progress: false
  device: cpu
  amp: "off"  # fp32 on any CPU; the bf16 tests ask for amp=auto with the detection forced
"""


@pytest.fixture
def tiny_args(tmp_path: Path, corpus: Path, session_tokenizer: Path) -> Callable[..., list[str]]:
    """Command-line args for a tiny, quiet, fast run in tmp_path: a YAML file, then overrides.

    make(*extra, run="name") appends `extra` overrides and puts the run in tmp_path / name.
    """
    tok = tmp_path / "tok.json"
    shutil.copy(session_tokenizer, tok)
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(TINY_YAML, encoding="utf-8")

    def make(*extra: str, run: str = "run") -> list[str]:
        return [
            str(yaml_path),
            f"train.out_dir={tmp_path / run}",
            f"data.path={corpus}",
            f"data.tokenizer={tok}",
            f"data.cache_dir={tmp_path / 'cache'}",
            *extra,
        ]

    return make


@pytest.fixture
def tiny_cfg(tiny_args: Callable[..., list[str]]) -> Callable[..., Config]:
    """A Config built from tiny_args (same overrides and run name)."""

    def make(*extra: str, run: str = "run") -> Config:
        path, *overrides = tiny_args(*extra, run=run)
        return load_config(path, overrides)

    return make
