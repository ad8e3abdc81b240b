"""Metrics: perplexity, bits per byte, moving average and the crash-safe CSV logger."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from llm_tiny.metrics import (
    CSVLogger,
    MovingAverage,
    bits_per_byte,
    perplexity,
)


def test_perplexity_is_exp_of_torch_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 37, generator=g) * 3
    targets = torch.randint(0, 37, (64,), generator=g)
    ce = F.cross_entropy(logits, targets).item()
    manual = -(logits.log_softmax(-1).gather(1, targets[:, None])).mean().item()
    assert perplexity(ce) == pytest.approx(math.exp(manual), rel=1e-6)
    # A uniform model over V symbols has perplexity V.
    assert perplexity(F.cross_entropy(torch.zeros(8, 37), targets[:8]).item()) == pytest.approx(37)


def test_perplexity_overflows_to_inf() -> None:
    assert perplexity(1e6) == math.inf


def test_bits_per_byte_hand_worked() -> None:
    # 4 tokens covering 10 bytes, each predicted with probability 1/2: 4 ln 2 nats = 4 bits over 10 bytes.
    assert bits_per_byte(4 * math.log(2), 10) == pytest.approx(0.4)
    # A uniform byte-level model (256 choices per byte) costs exactly 8 bits per byte.
    assert bits_per_byte(100 * math.log(256), 100) == pytest.approx(8.0)


def test_bits_per_byte_rejects_empty_text() -> None:
    with pytest.raises(ValueError, match="total_bytes"):
        bits_per_byte(1.0, 0)


def test_moving_average_forgets_old_values() -> None:
    ma = MovingAverage(window=3)
    assert math.isnan(ma.value)
    assert [ma.update(x) for x in (3, 6, 9, 12)] == [3, 4.5, 6, 9]


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.integers(1, 20))
def test_moving_average_equals_mean_of_window(xs: list[float], window: int) -> None:
    ma = MovingAverage(window)
    for x in xs:
        ma.update(x)
    tail = xs[-window:]
    assert ma.value == pytest.approx(math.fsum(tail) / len(tail), rel=1e-9, abs=1e-6)


def test_moving_average_rejects_empty_window() -> None:
    with pytest.raises(ValueError):
        MovingAverage(0)


def test_csv_logger_appends_across_instances_with_one_header(tmp_path) -> None:
    path = tmp_path / "sub" / "log.csv"
    cols = ["step", "loss", "note"]
    CSVLogger(path, cols).log({"step": 1, "loss": 2.5, "note": "a"})
    second = CSVLogger(path, cols)
    second.log({"step": 2, "loss": 1.25})
    second.log({"step": 3, "loss": 1 / 3, "note": "c,d"})
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [cols, ["1", "2.5", "a"], ["2", "1.25", ""], ["3", "0.333333", "c,d"]]


def test_csv_logger_rows_reach_disk_before_close(tmp_path) -> None:
    path = tmp_path / "log.csv"
    CSVLogger(path, ["a"]).log({"a": 7})
    # A second reader sees the row at once: nothing waits in a buffer for a crash to lose.
    assert path.read_text().splitlines() == ["a", "7"]


def test_csv_logger_refuses_other_columns_and_unknown_keys(tmp_path) -> None:
    path = tmp_path / "log.csv"
    CSVLogger(path, ["a", "b"]).log({"a": 1})
    with pytest.raises(ValueError, match="columns"):
        CSVLogger(path, ["a", "c"])
    with pytest.raises(ValueError, match="unknown"):
        CSVLogger(path, ["a", "b"]).log({"z": 1})


_PEAK_PROBE = """
import subprocess, sys
from pathlib import Path
from llm_tiny.metrics import peak_rss_mb, reset_peak_rss
before, with_kids = peak_rss_mb(), peak_rss_mb(children=True)
big = b"\\x01" * (512 * 2**20)  # 512 MiB, every page written: beyond import-time peaks
grown = peak_rss_mb()
del big
subprocess.run([sys.executable, "-c", "b = b'\\x01' * (200 * 2**20)"], check=True)
kids = peak_rss_mb(children=True) - peak_rss_mb()
resettable = True
try:
    Path("/proc/self/clear_refs").write_text("5")
except OSError:
    resettable = False
reset_peak_rss()
print(before, with_kids, grown, kids, resettable, peak_rss_mb())
"""


def test_peak_rss_counts_this_process_and_with_children_its_largest_finished_child() -> None:
    # A fresh interpreter: the test process's own peak is whatever earlier tests left behind.
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    ).stdout.split()
    before, with_kids, grown, kids = map(float, out[:4])
    assert 10 < before <= with_kids
    # >= rather than a rise over `before`: Linux hands a child its parent's high-water mark at fork
    assert grown >= 512  # the 512 MiB, all resident at once
    assert (
        kids >= 200
    )  # the largest finished child's peak: the 200 MiB one (or an inherited higher)
    # Linux lets a process reset its mark (to now, or to what it inherited if that is higher)
    if out[4] == "True" and before < grown - 256:
        assert float(out[5]) < grown - 256  # the 512 MiB is forgotten
