"""A run folder (train.out_dir): held by one live run at a time, then made ready for it.

It holds config.yaml, log.csv, ckpt_last.pt and ckpt_best.pt (and eval.csv from `eval`). A fresh run
starts without the old files (and is refused where checkpoints are, unless train.overwrite says to
delete them); a resumed run keeps them, its log.csv cut at the checkpoint's step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_tiny import checkpoint as ckpt_io
from llm_tiny import runlog
from llm_tiny.config import Config, save_config
from llm_tiny.errors import UserError
from llm_tiny.filekind import run_checkpoints
from llm_tiny.files import RunLock, remove_stale_temps
from llm_tiny.init_from import TOKENIZER_FILE
from llm_tiny.metrics import CSVLogger

RUN_FILES = ("log.csv", "eval.csv", "ckpt_last.pt", "ckpt_best.pt")


def refuse_to_overwrite(out: Path) -> None:
    """A UserError if `out` holds a run's checkpoints: a fresh start there would delete them, and
    re-running a stopped command (up-arrow, Enter) must never lose a run."""
    held = run_checkpoints(out)
    if held:
        raise UserError(
            f"{out} already holds a run ({', '.join(p.name for p in held)}); continue it "
            "with train.resume=true, or start over with train.overwrite=true (which deletes it)"
        )


def claim(out: Path, undo: contextlib.ExitStack) -> None:
    """Lock the folder until `undo` closes (another live run is a UserError) and drop the temp
    files a run killed mid-write left: the folder is ours now."""
    undo.enter_context(RunLock(out))
    remove_stale_temps(out, (*RUN_FILES, "config.yaml", TOKENIZER_FILE))


def make_ready(out: Path, cfg: Config, resumed_at: int | None) -> CSVLogger:
    """The folder made ready for a run (fresh when resumed_at is None, else resumed at that step),
    with its config.yaml written; returns the log.csv writer."""
    out.mkdir(parents=True, exist_ok=True)
    if resumed_at is None:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    else:
        runlog.truncate_log(out / "log.csv", resumed_at)
    save_config(cfg, out / "config.yaml")
    return runlog.writer(out / "log.csv")


def resume_point(
    resume: bool, overwrite: bool, last_path: Path, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The run's own ckpt_last.pt, read, when train.resume asks for it and it exists; else None, for
    a fresh start, which a folder holding checkpoints refuses unless train.overwrite allows it."""
    if resume and last_path.is_file():
        return ckpt_io.load_checkpoint(last_path)
    if resume:
        log(f"note: no {last_path} to resume from; starting fresh")
    if not overwrite:
        refuse_to_overwrite(last_path.parent)
    return None
