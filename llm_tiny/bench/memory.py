"""Run a command and watch the memory of its whole process tree (the command and every worker).

    python -m llm_tiny.bench.memory -- python -m llm_tiny.prepare configs/tiny.yaml data.path=big.txt

Every 0.2 s it adds up, over the process and all its descendants, the resident set (RSS: pages
a forked worker shares with its parent count in both, so this overstates) and the proportional
set (PSS: a shared page is split between the processes that share it; what the tree really
takes). It prints the peaks of both and the wall-clock time, and exits with the command's code.
Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

PAGE = 4096


def _tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return out


def _kb(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes, summed over pid's tree."""
    rss = pss = 0
    for p in _tree(pid):
        rss += _kb(f"/proc/{p}/status", "VmRSS:") * 1024
        pss += _kb(f"/proc/{p}/smaps_rollup", "Pss:") * 1024
    return rss, pss


def watch(cmd: list[str], interval: float = 0.2, stdout: IO[Any] | None = None) -> dict[str, float]:
    """Run cmd to the end (its stdout to `stdout` if given); exit code, seconds, peak tree RSS and PSS in MB."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    return {
        "code": proc.returncode,
        "s": seconds,
        "rss_mb": peak_rss / 1e6,
        "pss_mb": peak_pss / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.bench.memory -- COMMAND ..."""
    p = argparse.ArgumentParser(
        prog="python -m llm_tiny.bench.memory",
        description="Peak memory (RSS and PSS) of a command's whole process tree.",
        epilog="example: python -m llm_tiny.bench.memory -- python -m llm_tiny.prepare configs/tiny.yaml",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        p.error("give a command after --")
    r = watch(cmd)
    print(
        f"memory: {r['s']:.1f} s, peak tree RSS {r['rss_mb']:,.0f} MB, "
        f"peak tree PSS {r['pss_mb']:,.0f} MB, exit {r['code']}",
        file=sys.stderr,
    )
    return int(r["code"])


if __name__ == "__main__":
    sys.exit(main())
