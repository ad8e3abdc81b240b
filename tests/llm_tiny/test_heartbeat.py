"""Heartbeat: a slow run printing to a file or pipe still says how far it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_tiny import heartbeat
from llm_tiny.heartbeat import Heartbeat
from llm_tiny.train import main as train_main


def test_silent_when_off_or_not_yet_due() -> None:
    lines: list[str] = []
    Heartbeat(lines.append, on=False, every=0).step(1, (10,), 100)
    Heartbeat(lines.append, on=True, every=3600).step(1, (10,), 100)
    assert list(Heartbeat(lines.append, on=True, every=3600).each(range(3), 3, "eval")) == [0, 1, 2]
    assert lines == []


def test_steps_give_the_pace_and_the_next_row() -> None:
    lines: list[str] = []
    beat = Heartbeat(lines.append, on=True, every=0)
    for step in range(1, 13):
        beat.step(step, (10, 4), 12)
    # rows at 4, 8, 10 and 12 print themselves; every other step says which row comes next
    nexts = [int(m.group(1)) for m in map(re.compile(r"next log row at step (\d+)").search, lines)]
    assert nexts == [4, 4, 4, 8, 8, 8, 10, 12]
    assert all(
        re.match(r"step \d+: [\d.]+ s per step, next log row at step \d+ \(~", ln) for ln in lines
    )


def test_batches_say_how_many_are_done_and_pass_through() -> None:
    lines: list[str] = []
    items = list(Heartbeat(lines.append, on=True, every=0).each(iter("abc"), 3, "eval, step 0"))
    assert items == ["a", "b", "c"]
    assert [ln.split(" batches")[0] for ln in lines] == [
        f"eval, step 0: {i} of 3" for i in (1, 2, 3)
    ]


def test_training_without_a_terminal_beats_between_rows(
    tiny_args: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(heartbeat.Heartbeat, "__init__", _every_call(heartbeat.Heartbeat.__init__))
    args = tiny_args("train.max_steps=6", "train.log_interval=3", "train.eval_interval=6")
    assert train_main([*args, "train.progress=true"]) == 0  # on, but stderr is no terminal
    out = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("eval, step 0: 1 of ") for ln in out)
    beats = [ln for ln in out if "s per step" in ln]
    assert [ln.split(":")[0] for ln in beats] == ["step 1", "step 2", "step 4", "step 5"]


def _every_call(init: Callable[..., None]) -> Callable[..., None]:
    def patched(self: Heartbeat, log: Callable[[str], None], on: bool, every: float = 30.0) -> None:
        init(self, log, on, 0.0)  # due at every call: the test needs no slow machine

    return patched
