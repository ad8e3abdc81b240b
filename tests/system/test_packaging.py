"""The package metadata is complete: `pip install -e .` brings every library the code imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata checked is the same on 3.10

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("llm_tiny", "tok", "model")
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "tiktoken_ext": "tiktoken"}
# imported only by the measurement tools, and only when installed (they say how to get them)
OPTIONAL = {"tokenizers", "tiktoken"}


def third_party_imports() -> set[str]:
    """Top-level names the library's modules import that are neither stdlib nor our own packages."""
    found: set[str] = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {n for n in found if n not in sys.stdlib_module_names and n not in PACKAGES}


def requirement_names(lines: list[str]) -> set[str]:
    """Distribution names of requirement strings ("torch==2.13.0" -> "torch")."""
    out = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name = line.replace(">", "=").replace("<", "=").replace("[", "=").split("=")[0]
            out.add(name.strip().lower())
    return out


def test_pyproject_lists_every_library_the_code_imports() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = requirement_names(meta["dependencies"])
    needed = {DISTRIBUTION.get(n, n).lower() for n in third_party_imports()} - OPTIONAL
    assert needed <= declared, f"missing from pyproject dependencies: {sorted(needed - declared)}"


def test_requirements_txt_holds_the_same_runtime_pins_as_pyproject() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = (ROOT / "requirements.txt").read_text().splitlines()
    pins = {r.split("#")[0].strip() for r in reqs}
    for dep in meta["dependencies"]:
        assert (
            dep in pins
        ), f"{dep} is in pyproject.toml but not pinned the same in requirements.txt"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_subpackage_is_found_by_setuptools(pkg: str) -> None:
    """setuptools' find (pyproject [tool.setuptools.packages.find]) must see each folder with an
    __init__.py, so an installed copy is not missing a subpackage."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=["llm_tiny*", "tok*", "model*"]))
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / pkg).rglob("__init__.py")
    }
    assert folders <= found
