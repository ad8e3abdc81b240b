"""llm_tiny.rundir and llm_tiny.runlog: the run folder made ready, log.csv read back and cut."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from llm_tiny import rundir, runlog
from llm_tiny.config import Config
from llm_tiny.errors import UserError


def write_log(path: Path, steps: list[int]) -> None:
    out = runlog.writer(path)
    for s in steps:
        out.log({"step": s, "lr": 0.001, "train_loss": 2.5, "elapsed_s": float(s)})


def test_a_fresh_run_starts_without_the_old_files_and_a_resumed_one_keeps_them(
    tmp_path: Path,
) -> None:
    write_log(tmp_path / "log.csv", [0, 5, 10, 15])
    for name in ("ckpt_last.pt", "ckpt_best.pt", "eval.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
    rundir.make_ready(tmp_path, Config(), resumed_at=10)
    assert [r["step"] for r in runlog.read_log(tmp_path / "log.csv")] == ["0", "5", "10"]
    assert (tmp_path / "ckpt_last.pt").is_file() and (tmp_path / "config.yaml").is_file()
    writer = rundir.make_ready(tmp_path, Config(), resumed_at=None)
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt", "config.yaml"}
    writer.log({"step": 0})
    assert runlog.read_table(tmp_path / "log.csv")[0] == list(runlog.LOG_FIELDS)


def test_a_claimed_folder_is_refused_to_another_run_until_released(tmp_path: Path) -> None:
    (tmp_path / ".log.csv.123.tmp").write_text("torn")  # what a run killed mid-write leaves
    with contextlib.ExitStack() as undo:
        rundir.claim(tmp_path, undo)
        assert not (tmp_path / ".log.csv.123.tmp").exists()
        with pytest.raises(UserError, match="is in use by"), contextlib.ExitStack() as other:
            rundir.claim(tmp_path, other)
    with contextlib.ExitStack() as undo:
        rundir.claim(tmp_path, undo)  # free again


def test_a_torn_last_row_is_dropped_and_other_columns_are_not_a_training_log(
    tmp_path: Path,
) -> None:
    write_log(tmp_path / "log.csv", [0, 5])
    with (tmp_path / "log.csv").open("a") as f:
        f.write("10,0.001,2.4")  # a crash mid-row
    assert [r["step"] for r in runlog.read_log(tmp_path / "log.csv")] == ["0", "5"]
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert runlog.read_log(tmp_path / "other.csv") == []
    assert runlog.read_table(tmp_path / "other.csv") == (["a", "b"], [{"a": "1", "b": "2"}])
    assert runlog.read_log(tmp_path / "missing.csv") == []
