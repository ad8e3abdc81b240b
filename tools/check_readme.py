"""Run the README's console blocks and compare what they print with what the README shows.

    python tools/check_readme.py            # the short blocks (about a minute), in a scratch copy of the repo
    python tools/check_readme.py --all      # also the blocks marked slow (train, finetune, sweep: ~20 min)
    python tools/check_readme.py --write    # put what the commands print into the README (blocks without "...")

A console block is a ```console fence; `$ ` starts a command, the lines after it are its output. A line "..."
stands for any number of lines. The comment line just before a fence may mark it:
`<!-- check: slow -->` (run only with --all) or `<!-- check: skip -->` (machine-dependent, never run). Wall-clock
figures (seconds, MB of memory, tokens per second, load averages) are masked and the trainer's heartbeat lines
dropped before comparing, so a block passes on any machine that computes the same thing. Commands run in the
README's order in one scratch copy of the tracked files, so a block may use what an earlier one wrote. Exit code 1
when a block differs.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "@@@readme-check@@@"
ANY = "..."
# wall-clock figures: "0.10 s", "218.5 s", "(73 s)", "101 MB", "6,636 tok/s", "load average 3.7"
VOLATILE = [
    (re.compile(r"\d[\d,]*(\.\d+)? ?(s|ms|min)\b"), "<time>"),
    (re.compile(r"\d[\d,]*(\.\d+)? ?(MB|GB|KB)\b"), "<mem>"),
    (re.compile(r"\d[\d,]*(\.\d+)? ?tok(ens)?/s\b"), "<rate>"),
    (re.compile(r"load average [\d.]+"), "load average <n>"),
]
TIME_COLUMNS = {"seconds", "elapsed_s", "tokens_per_s"}
# the trainer's heartbeat (llm_tiny.heartbeat): printed or not depending on how fast this machine is
HEARTBEAT = re.compile(r"step \d+: [\d.]+ s per step, next log row |.+: \d+ of \d+ batches done, ~")


@dataclass
class Block:
    """One console fence: where it sits in the README, its mark, and its (command, output lines) pairs."""

    start: int  # index of the first line inside the fence
    end: int  # index of the closing fence
    mark: str
    steps: list[tuple[str, list[str]]] = field(default_factory=list)


def parse(lines: list[str]) -> list[Block]:
    """The console blocks of a README's lines."""
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            mark = re.search(r"<!-- check: (\w+) -->", lines[i - 1]) if i else None
            block = Block(i + 1, i + 1, mark.group(1) if mark else "")
            j = i + 1
            while lines[j].strip() != "```":
                if lines[j].startswith("$ "):
                    block.steps.append((lines[j][2:], []))
                elif block.steps:
                    block.steps[-1][1].append(lines[j])
                j += 1
            block.end = j
            blocks.append(block)
            i = j
        i += 1
    return blocks


def mask(line: str) -> str:
    """The line with its wall-clock figures replaced by placeholders."""
    for pattern, placeholder in VOLATILE:
        line = pattern.sub(placeholder, line)
    return line.rstrip()


def mask_tables(lines: list[str]) -> list[str]:
    """Mask the cells of time columns in markdown tables, then every line's volatile figures."""
    out, timed = [], set()
    for line in lines:
        if line.startswith("|"):
            cells = line.strip().strip("|").split("|")
            names = [c.strip() for c in cells]
            if TIME_COLUMNS & set(names):
                timed = {k for k, n in enumerate(names) if n in TIME_COLUMNS}
            elif timed and not set(line) <= set("|-: "):
                line = "|" + "|".join("<t>" if k in timed else c for k, c in enumerate(cells)) + "|"
        else:
            timed = set()
        out.append(mask(line))
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether actual fits expected, where a line "..." in expected matches any run of lines."""
    exp, act = mask_tables(expected), mask_tables(actual)
    # every line ends in a newline, so "..." absorbs whole lines, none at all included
    pattern = "".join(r"(?:[^\n]*\n)*?" if e == ANY else re.escape(e) + "\n" for e in exp)
    return re.fullmatch(pattern, "".join(a + "\n" for a in act)) is not None


def run(blocks: list[Block], workdir: Path) -> list[list[list[str]]]:
    """Run every block's commands in order in workdir; the output lines of each command."""
    script = ["__status=0"]
    for b, block in enumerate(blocks):
        for s, (cmd, _) in enumerate(block.steps):
            # the mark on a line of its own, then $? as the previous command left it (for `echo $?`)
            script.append(f"printf '\\n{MARK} {b} {s}\\n'; (exit $__status)")
            script.append(f"{cmd} 2>&1; __status=$?")
    script.append(f"printf '\\n{MARK} end\\n'")
    # a user's fresh shell: under `make check-readme`, an inherited MAKELEVEL would make every
    # `make` in the README print "Entering directory" lines the reader never sees
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=workdir, capture_output=True, text=True, env=env
    )
    outputs: list[list[list[str]]] = [[[] for _ in b.steps] for b in blocks]
    where: tuple[int, int] | None = None
    outs: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            if (
                where is not None and outs and outs[-1] == ""
            ):  # the newline printf put before the mark
                outs.pop()
            word = line.split()[1:]
            where = None if word == ["end"] else (int(word[0]), int(word[1]))
            outs = outputs[where[0]][where[1]] if where else []
        elif where is not None and not HEARTBEAT.match(line):
            outs.append(line)
    return outputs


def scratch_copy() -> Path:
    """A copy of the repository's tracked files (and nothing a run wrote), in a temporary folder."""
    dest = Path(tempfile.mkdtemp(prefix="readme-check-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Run the README's console blocks; 0 when each prints what the README shows."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="also run the blocks marked slow")
    ap.add_argument("--write", action="store_true", help="write the actual output into the README")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    lines = args.readme.read_text(encoding="utf-8").splitlines()
    wanted = {"", "slow"} if args.all else {""}
    blocks = [b for b in parse(lines) if b.mark in wanted]
    workdir = scratch_copy()
    outputs = run(blocks, workdir)
    failed = 0
    for block, outs in reversed(
        list(zip(blocks, outputs, strict=True))
    ):  # reversed: writing keeps indices valid
        bad = [k for k, (_, exp) in enumerate(block.steps) if not matches(exp, outs[k])]
        for k in bad:
            cmd, exp = block.steps[k]
            print(f"README line {block.start + 1}: $ {cmd}")
            sys.stdout.writelines(
                d + "\n" for d in difflib.unified_diff(exp, outs[k], "README", "now", lineterm="")
            )
        failed += len(bad)
        if bad and args.write:
            if any(ANY in exp for _, exp in block.steps):
                print(f"README line {block.start + 1}: holds '...', edit it by hand")
                continue
            new = [
                line
                for (cmd, _), out in zip(block.steps, outs, strict=True)
                for line in [f"$ {cmd}", *out]
            ]
            lines[block.start : block.end] = new
    if args.write:
        args.readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(workdir, ignore_errors=True)
    n = sum(len(b.steps) for b in blocks)
    print(f"readme-check: {n - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
