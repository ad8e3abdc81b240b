"""What the model benchmark prints: its table (one row per variant), the notes under it, the report file.

The figures come measured (`llm_tiny.bench.model`); here they are only laid out, through
`llm_tiny.table.markdown_table` like every table of the project.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_tiny.bench.options import Settings
from llm_tiny.bench.peak import PROBE_SIZES, mfu, peak_tflops
from llm_tiny.runtime import cpuinfo_field
from llm_tiny.table import markdown_table

COLUMNS = (
    "variant",
    "attn",
    "amp",
    "threads",
    "params",
    "batch x T",
    "train tok/s",
    "infer tok/s",
    "gen tok/s (KV cache)",
    "gen tok/s (no cache)",
    "KV speedup",
    "peak mem MB",
    "MFU",
    "train vs base",
    "infer vs base",
    "last loss",
)


@dataclass(frozen=True)
class Result:
    """One variant's measured figures (rates are tokens/s, medians of the timed repeats)."""

    name: str
    attn: str
    amp: str  # fp32, bf16 or fp16
    threads: int | None  # torch CPU threads; None on a GPU
    params: int
    batch: str  # "B x T" as "32x64"
    train: float
    infer: float
    gen_kv: float
    gen_nokv: float
    peak_mb: float
    last_loss: float
    flops_per_token: float  # training FLOPs per token (6N + 12·L·T·C)
    peak_tflops: float | None = None  # the device's peak in this variant's precision; None: no MFU


def mfu_cell(r: Result) -> str:
    """The MFU column: achieved training FLOP/s over the peak, in percent; n/a with no peak."""
    if not r.peak_tflops:
        return "n/a"
    return f"{100 * mfu(r.train, r.flops_per_token, r.peak_tflops):.1f}%"


def row(r: Result, base: Result) -> list[str]:
    """One table row, in COLUMNS order (ratios against base)."""
    loss = f"{r.last_loss:.4f}" if math.isfinite(r.last_loss) else f"{r.last_loss} (NOT FINITE)"
    return [
        r.name,
        r.attn,
        r.amp,
        "-" if r.threads is None else str(r.threads),
        f"{r.params / 1e6:.2f}M",
        r.batch,
        f"{r.train:,.0f}",
        f"{r.infer:,.0f}",
        f"{r.gen_kv:,.1f}",
        f"{r.gen_nokv:,.1f}",
        f"{r.gen_kv / r.gen_nokv:.2f}x",
        f"{r.peak_mb:,.0f}",
        mfu_cell(r),
        f"{r.train / base.train:.2f}x",
        f"{r.infer / base.infer:.2f}x",
        loss,
    ]


def table(results: Sequence[Result]) -> str:
    """The markdown table of every variant, the first one the base of the ratios."""
    return markdown_table(COLUMNS, [row(r, results[0]) for r in results])


def body(results: Sequence[Result], notes: Sequence[str]) -> str:
    """The table, then the notes as a list."""
    return table(results) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def load_average() -> str:
    """The 1-minute load average, or n/a where the OS keeps none."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def device_description(device: torch.device) -> str:
    """A short name for the machine: GPU model, or CPU model with core and thread counts."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpuinfo_field("model name") or platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores"


def append_report(path: Path, heading: str, command: str, body: str) -> None:
    """Append a section (heading, the command in a code block, the table) to a markdown file."""
    text = f"\n### {heading}\n\n```bash\n{command}\n```\n\n{body}\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


PeakOf = Callable[[str, int | None], float | None]  # (amp, CPU threads) -> peak TFLOP/s


def device_notes(
    device: torch.device, peak_override: float | None, measured: dict[tuple[str, int], float]
) -> tuple[PeakOf, list[str]]:
    """The peak TFLOP/s MFU divides by for a variant's precision and threads, and the notes on
    MFU and peak memory; `measured`: a CPU's probed peaks by (amp, threads), unless overridden."""
    if device.type == "cuda":
        peak, dev_name = peak_tflops(device)
        peak = peak_override or peak
        return (lambda amp, t: peak), [
            f"MFU: training FLOPs (6N + 12·L·T·C per token) over {dev_name}'s peak dense bf16 rate "
            + (f"of {peak:g} TFLOP/s" if peak else "(not in the table: pass --peak-tflops)"),
            "peak mem: torch.cuda.max_memory_allocated during one train step, one forward and a "
            "short generation, each variant alone",
        ]
    memory = (
        "peak mem: the process's peak RSS (torch runtime included) during one train step, "
        "one forward and a short generation, each variant alone"
    )
    if peak_override:
        return (lambda amp, t: peak_override), [
            f"MFU: training FLOPs (6N + 12·L·T·C per token) over the given {peak_override:g} TFLOP/s",
            memory,
        ]
    return (lambda amp, t: measured.get((amp, t or 0))), [cpu_mfu_note(measured), memory]


def cpu_mfu_note(measured: dict[tuple[str, int], float]) -> str:
    """The note on CPU MFU: what it divides by, with the peaks measured in this run."""
    per_threads = "; ".join(
        f"{t} thread(s): fp32 {measured[('fp32', t)] * 1e3:,.0f}, bf16 {measured[('bf16', t)] * 1e3:,.0f}"
        for t in sorted({t for _, t in measured})
    )
    sizes = "-".join(str(n) for n in (PROBE_SIZES[0], PROBE_SIZES[-1]))
    return (
        "MFU: training FLOPs (6N + 12·L·T·C per token) over this CPU's own matmul peak in the "
        "variant's precision (fp32, or bf16 under bf16 autocast) with its threads, measured in "
        f"this run (best of 3 square matmuls, {sizes}), in GFLOP/s: {per_threads}"
    )


def run_notes(s: Settings, load_before: str) -> list[str]:
    """The notes on how the numbers were taken: load, the loss check, repeats and shapes."""
    return [
        f"load average {load_before} before, {load_average()} after, on {os.cpu_count()} CPUs",
        "last loss: training loss of the last timed step, a check for inf/nan (dropout and "
        "numerics make it differ between variants)",
        f"median of {s.repeats} repeats after {s.warmup} warm-up; generation: batch 1, "
        f"{s.prompt_len}-token prompt, {s.gen_tokens} new tokens; ratios from interleaved repeats",
    ]
