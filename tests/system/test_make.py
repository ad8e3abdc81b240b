"""The Makefile's own behaviour around the commands: what a newcomer types first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("target", ["sample", "eval", "export"])
def test_a_run_never_trained_says_how_to_train_it(target: str) -> None:
    out = make(target, "CFG=configs/no_such_run.yaml")
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == (
        "error: runs/no_such_run/ckpt_best.pt not found: "
        "train it first: make train CFG=configs/no_such_run.yaml"
    )


def test_help_lists_resume_next_to_train() -> None:
    names = [line.split()[0] for line in make("help").stdout.splitlines() if line.strip()]
    assert names.index("resume") == names.index("train") + 1
