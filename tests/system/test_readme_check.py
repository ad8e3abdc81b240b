"""tools/check_readme.py: how it reads console blocks and which differences it forgives."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_readme", ROOT / "tools" / "check_readme.py")
assert spec and spec.loader
check = importlib.util.module_from_spec(spec)
sys.modules["check_readme"] = check  # dataclasses look their module up there
spec.loader.exec_module(check)

README = """intro
<!-- check: slow -->
```console
$ make train
step 0: val loss 6.2596
done in 218.5 s
$ echo $?
0
```
```console
$ true
```
"""


def test_blocks_commands_outputs_and_marks_are_read() -> None:
    blocks = check.parse(README.splitlines())
    assert [b.mark for b in blocks] == ["slow", ""]
    assert blocks[0].steps == [
        ("make train", ["step 0: val loss 6.2596", "done in 218.5 s"]),
        ("echo $?", ["0"]),
    ]
    assert blocks[1].steps == [("true", [])]


def test_wall_clock_figures_are_forgiven_but_results_are_not() -> None:
    assert check.matches(["done in 218.5 s, 101 MB"], ["done in 9.0 s, 87 MB"])
    assert check.matches(["6,636 tok/s, load average 3.7"], ["12 tok/s, load average 0.1"])
    assert not check.matches(["val loss 3.2855"], ["val loss 3.2856"])


def test_dots_stand_for_any_lines_and_only_there() -> None:
    assert check.matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert check.matches(["a", "...", "z"], ["a", "z"])
    assert not check.matches(["a", "z"], ["a", "b", "z"])
    assert not check.matches(["a", "...", "z"], ["a", "b"])


def test_time_columns_of_tables_are_masked() -> None:
    table = ["| rank | val_loss | seconds |", "| ---: | ---: | ---: |", "| 1 | 3.531 | 93.61 |"]
    assert check.matches(table, table[:2] + ["| 1 | 3.531 | 120.1 |"])
    assert not check.matches(table, table[:2] + ["| 1 | 3.532 | 93.61 |"])


def test_commands_run_in_order_and_exit_codes_reach_echo(tmp_path: Path) -> None:
    blocks = check.parse(
        ["```console", "$ printf 'x'", "$ false", "$ echo $?", "$ cat f || echo no", "```"]
    )
    (tmp_path / "f").write_text("hi\n")
    assert check.run(blocks, tmp_path) == [[["x"], [], ["1"], ["hi"]]]


def test_heartbeat_lines_are_left_out_of_the_output(tmp_path: Path) -> None:
    lines = [
        "step 4: 7.8 s per step, next log row at step 5 (~8 s)",
        "eval, step 10: 1 of 4 batches done, ~6 s to go",
        "step 5: val loss 8.9906, bpb 4.1291, train loss 9.9479",
    ]
    blocks = check.parse(["```console", "$ printf '" + "\\n".join(lines) + "\\n'", "```"])
    assert check.run(blocks, tmp_path) == [[[lines[2]]]]
