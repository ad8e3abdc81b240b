"""The public entry point: `tok.bpe` re-exports the library, `python -m tok.bpe` runs the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tok
import tok.bpe as bpe
import tok.tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_the_entry_point_gives_the_library_names() -> None:
    assert bpe.Tokenizer is tok.tokenizer.Tokenizer is tok.Tokenizer
    assert bpe.GPT4_PATTERN == tok.GPT4_PATTERN and bpe.FORMAT == "llm-tiny-bpe"
    assert set(bpe.__all__) >= set(tok.__all__)


def test_python_m_tok_bpe_runs_once_with_no_warning() -> None:
    # runpy warns when the package imported tok.bpe before running it as __main__
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tok.bpe", "encode", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m tok.bpe encode" in done.stdout and not done.stderr


def imports_of(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def test_no_module_of_tok_imports_back_into_a_circle() -> None:
    files = {f"tok.{p.stem}": p for p in (ROOT / "tok").glob("*.py") if p.stem != "__init__"}
    graph = {m: {i for i in imports_of(p) if i in files} for m, p in files.items()}
    assert "tok.bpe" not in set().union(*graph.values())  # the entry point: nothing imports it
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import circle: {' -> '.join((*path, m))}"
        if m not in done:
            for n in graph[m]:
                visit(n, (*path, m))
            done.add(m)

    for m in graph:
        visit(m, ())
    init = imports_of(ROOT / "tok" / "__init__.py")
    assert "tok.bpe" not in init and "importlib" not in init  # no lazy-import trick
