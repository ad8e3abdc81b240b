"""log.csv, a run's training log: its columns, the row the trainer writes, reading it back, and
cutting it at a checkpoint's step when a run resumes. Train, plot and the tests all go through here.

A row is written every log_interval steps and at every evaluation (val_* cells are empty on rows
without one); train_loss is the mean training loss over the steps since the previous row.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
import torch.distributed as dist

from llm_tiny.files import atomic_write_text
from llm_tiny.metrics import CSVLogger, Throughput

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


class Rows:
    """What goes into log.csv's rows while a run trains: the training losses since the last row
    (kept as device tensors until a row needs them, then averaged over the DDP ranks), tokens per
    second between rows, and rank 0's writer (None on the other ranks)."""

    def __init__(
        self,
        out: CSVLogger | None,
        step: int,
        pending: list[float],
        tokens_per_step: int,
        device: torch.device,
        world_size: int,
    ) -> None:
        self.out, self.tokens_per_step = out, tokens_per_step
        self.pending: list[torch.Tensor | float] = list(pending)
        self.throughput = Throughput(step)
        self.device, self.world_size = device, world_size

    def add(self, loss: torch.Tensor) -> None:
        """One step's training loss (a device tensor: no sync here)."""
        self.pending.append(loss)

    def losses(self, keep: bool = False) -> list[float]:
        """The training losses since the last row (averaged over ranks), which the next row then
        no longer counts unless keep=True (a stop between rows: its checkpoint keeps them, so the
        resumed run's next row averages the same steps as an unbroken run)."""
        if not self.pending:
            return []
        local = torch.stack([torch.as_tensor(v, device=self.device) for v in self.pending])
        vals = local.double()
        if self.world_size > 1:
            dist.all_reduce(vals)
            vals /= self.world_size
        self.pending = local.tolist() if keep else []
        return vals.tolist()

    def write(
        self, step: int, lr: float | None, metrics: dict[str, float], elapsed: float
    ) -> float | None:
        """Write the row of `step` (metrics: train_loss and val_* as there are; elapsed: seconds
        of training); returns, and puts into metrics, the tokens per second since the last row."""
        tps = self.throughput.row(step, self.tokens_per_step)
        if tps:
            metrics["tokens_per_s"] = tps
        if self.out is not None:
            cells = {**metrics, "step": step, "lr": lr, "tokens_per_s": tps, "elapsed_s": elapsed}
            self.out.log({k: cells.get(k) for k in LOG_FIELDS})
        return tps
