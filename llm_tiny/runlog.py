"""log.csv, a run's training log: its columns, the row the trainer writes, reading it back, and
cutting it at a checkpoint's step when a run resumes. Train, plot and the tests all go through here.

A row is written every log_interval steps and at every evaluation (val_* cells are empty on rows
without one); train_loss is the mean training loss over the steps since the previous row.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from llm_tiny.files import atomic_write_text
from llm_tiny.metrics import CSVLogger

LOG_FIELDS = (
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_ppl",
    "val_bpb",
    "tokens_per_s",
    "elapsed_s",
)
TIMING_FIELDS = (
    "tokens_per_s",
    "elapsed_s",
)  # wall-clock columns: the only ones a resume may change


def writer(path: str | os.PathLike[str]) -> CSVLogger:
    """An appending, fsync-per-row writer of log.csv rows (header once)."""
    return CSVLogger(path, LOG_FIELDS)


def read_table(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows as dicts) of a CSV file; a row of another width (a torn last line from a
    crash) is dropped. OSError, UnicodeDecodeError and csv.Error reach the caller."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], []
    header = rows[0]
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:] if len(r) == len(header)]


def read_log(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """A training log.csv's rows as dicts; [] for a missing file or one with other columns."""
    if not Path(path).is_file():
        return []
    header, rows = read_table(path)
    return rows if tuple(header) == LOG_FIELDS else []


def truncate_log(path: str | os.PathLike[str], step: int) -> None:
    """Keep only log.csv rows up to `step`: a resumed run rewrites the rows after its checkpoint."""
    rows = [r for r in read_log(path) if r["step"].isdigit() and int(r["step"]) <= step]
    lines = [",".join(LOG_FIELDS)] + [",".join(r[k] for k in LOG_FIELDS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
