"""Benchmark a config: training, inference and generation throughput, peak memory, MFU on CUDA.

    python -m llm_tiny.bench --config configs/tiny.yaml --compare model.attn=naive --out BENCH.md

Every number is the median of several timed repeats after a warm-up, with the device synchronized
before each clock read. `--compare` adds a variant of the same config with one setting changed; the
variants' repeats are interleaved, so a ratio between them is measured over the same stretch of time
(on a shared machine, the other load hits both sides alike). Random token ids stand in for data:
throughput does not depend on which tokens flow through the model.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from llm_tiny import engine, runtime
from llm_tiny.bench import tokenizer as tok_bench
from llm_tiny.checkpoint import gpt_config
from llm_tiny.config import Config, load_config
from llm_tiny.errors import ArgumentParser, UserError, cli
from llm_tiny.optim import optimizer_for
from llm_tiny.table import markdown_table
from model.gpt import TinyGPT

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets. Matched by
# substring of torch.cuda.get_device_name(), first match wins, so the specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
)
# What a CUDA run compares against the base config when no --compare is given.
CUDA_COMPARES = ("model.attn=naive", "train.amp=fp16", "train.amp=off")
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


@dataclass
class Variant:
    """One config under test, with what it needs resident while its repeats are timed."""

    name: str
    cfg: Config
    device: torch.device
    amp: torch.dtype | None = None  # autocast dtype; None is full fp32
    threads: int | None = None  # torch CPU threads while this variant runs
    model: TinyGPT | None = None
    fwd: torch.nn.Module | None = None  # the model, or its torch.compile wrapper (train.compile)
    opt: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    prompt: torch.Tensor | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    last_loss: float = math.nan
    peak_mb: float = math.nan


def pick_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu (train's rules: a missing GPU is a UserError)."""
    return runtime.pick_device(name, 0)


def amp_name(dtype: torch.dtype | None) -> str:
    """fp32, bf16 or fp16: how a variant computes."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def sync(device: torch.device) -> None:
    """Wait for queued device work, so the clock reads the time the work took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(v: Variant, batch_size: int, prompt_len: int, seed: int) -> None:
    """Model, optimizer, scaler, a random batch and a random prompt for v, on its device."""
    cfg, t = v.cfg, v.cfg.train
    torch.manual_seed(seed)
    gcfg = gpt_config(cfg.model, cfg.data.vocab_size)
    v.model = TinyGPT(gcfg).to(v.device)
    # as in training, only the training/eval forward is compiled; the warm-up pays the compile
    v.fwd = torch.compile(v.model) if t.compile else v.model  # type: ignore[assignment]
    v.opt = optimizer_for(v.model, t, v.device.type)
    v.scaler = torch.amp.GradScaler(v.device.type, enabled=v.amp == torch.float16)
    g = torch.Generator().manual_seed(seed)
    T = gcfg.block_size
    xy = torch.randint(gcfg.vocab_size, (batch_size, T + 1), generator=g)
    v.batch = (xy[:, :-1].to(v.device), xy[:, 1:].to(v.device))
    v.prompt = torch.randint(gcfg.vocab_size, (1, prompt_len), generator=g).to(v.device)


def free(v: Variant) -> None:
    """Drop the variant's tensors and hand the memory back (to the OS on glibc, to CUDA's pool)."""
    v.model = v.fwd = v.opt = v.scaler = v.batch = v.prompt = None
    gc.collect()
    if v.device.type == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):  # glibc only; elsewhere a no-op
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def train_step(v: Variant) -> None:
    """One optimizer step over the whole batch, in grad_accum micro-steps: training's own step."""
    assert v.model is not None and v.fwd is not None and v.opt is not None
    assert v.scaler is not None and v.batch is not None
    t = v.cfg.train
    if v.batch[0].size(0) % t.grad_accum:
        raise UserError(
            f"--batch-size ({v.batch[0].size(0)}) must be divisible by train.grad_accum "
            f"({t.grad_accum})"
        )
    v.model.train()
    params = list(v.model.parameters())
    loss = engine.train_step(
        v.fwd, v.opt, v.scaler, v.batch, t.grad_accum, t.grad_clip, params, v.amp
    )
    v.last_loss = loss.item()  # .item() syncs; harmless, the clock is read after a sync anyway


def infer_step(v: Variant) -> None:
    """One forward pass over the batch, no gradients (what evaluation does)."""
    assert v.model is not None and v.fwd is not None and v.batch is not None
    v.model.eval()
    with torch.no_grad(), runtime.autocast(v.device, v.amp):
        v.fwd(v.batch[0])
    v.model.train()


def gen_step(v: Variant, new_tokens: int, use_cache: bool) -> None:
    """Sample new_tokens tokens after the prompt, with or without the KV cache."""
    assert v.model is not None and v.prompt is not None
    g = torch.Generator(v.device).manual_seed(0)
    with runtime.autocast(v.device, v.amp):
        v.model.generate(v.prompt, new_tokens, generator=g, use_cache=use_cache)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds one call of fn takes, device work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA allocator stats; Linux: the RSS high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Writing 5 to clear_refs resets the kernel's RSS high-water mark, which getrusage reports.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak bytes in MB since reset: CUDA tensor memory, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak (a fraction)."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12)


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, device name) for MFU; None when the device is not in the table."""
    name = torch.cuda.get_device_name(device)
    for key, tf in PEAK_BF16_TFLOPS:
        if key in name:
            return tf, name
    return None, name


@dataclass
class Settings:
    """How the bench runs: shapes, repeat counts and the device."""

    batch_size: int
    prompt_len: int
    gen_tokens: int
    warmup: int = 2
    repeats: int = 5
    seed: int = 0


def phases(s: Settings) -> dict[str, Callable[[Variant], None]]:
    """The measured operations, by name."""
    return {
        "train": train_step,
        "infer": infer_step,
        "gen_kv": lambda v: gen_step(v, s.gen_tokens, True),
        "gen_nokv": lambda v: gen_step(v, s.gen_tokens, False),
    }


def use_threads(v: Variant) -> None:
    """Give torch the variant's CPU thread count (a process-wide setting, so set per call)."""
    if v.threads and torch.get_num_threads() != v.threads:
        torch.set_num_threads(v.threads)


def measure_memory(v: Variant, s: Settings) -> None:
    """Peak memory of one training step, one forward and a short generation, variant alone."""
    use_threads(v)
    gc.collect()
    reset_peak_memory(v.device)
    build(v, s.batch_size, s.prompt_len, s.seed)
    train_step(v)
    infer_step(v)
    gen_step(v, min(8, s.gen_tokens), True)
    sync(v.device)
    v.peak_mb = peak_memory_mb(v.device)
    free(v)


def measure(variants: Sequence[Variant], s: Settings, log: Callable[[str], None]) -> None:
    """Peak memory per variant alone, then interleaved warm-up and timed repeats of every phase."""
    for v in variants:
        log(f"memory: {v.name}")
        measure_memory(v, s)
    threads = torch.get_num_threads()
    for v in variants:
        build(v, s.batch_size, s.prompt_len, s.seed)
    for phase, fn in phases(s).items():
        log(f"timing: {phase}")
        for v in variants:
            use_threads(v)
            for _ in range(s.warmup):
                fn(v)
        for _ in range(s.repeats):
            for v in variants:
                use_threads(v)
                v.times.setdefault(phase, []).append(timed(functools.partial(fn, v), v.device))
    for v in variants:
        free(v)
    torch.set_num_threads(threads)


def _rate(v: Variant, phase: str, tokens: int) -> float:
    return tokens / statistics.median(v.times[phase])


def table_rows(
    variants: Sequence[Variant], s: Settings, peak_override: float | None = None
) -> tuple[list[list[str]], list[str]]:
    """The markdown table rows (COLUMNS order) and footnotes (MFU peak, memory meaning)."""
    rows, notes = [], []
    base = variants[0]
    T = base.cfg.model.block_size
    tokens = s.batch_size * T
    peak, dev_name = (None, "")
    if base.device.type == "cuda":
        peak, dev_name = peak_tflops(base.device)
        peak = peak_override or peak
        notes.append(
            f"MFU: training FLOPs (6N + 12·L·T·C per token) over {dev_name}'s peak dense bf16 rate "
            + (f"of {peak:g} TFLOP/s" if peak else "(not in the table: pass --peak-tflops)")
        )
        notes.append(
            "peak mem: torch.cuda.max_memory_allocated during one train step, one forward and a "
            "short generation, each variant alone"
        )
    else:
        notes.append(
            "peak mem: the process's peak RSS (torch runtime included) during one train step, "
            "one forward and a short generation, each variant alone"
        )
    b_train, b_infer = _rate(base, "train", tokens), _rate(base, "infer", tokens)
    for v in variants:
        assert v.model is None
        gcfg = gpt_config(v.cfg.model, v.cfg.data.vocab_size)
        model = TinyGPT(gcfg)  # on CPU, for the parameter count and FLOPs formula only
        tr, inf = _rate(v, "train", tokens), _rate(v, "infer", tokens)
        kv, nokv = _rate(v, "gen_kv", s.gen_tokens), _rate(v, "gen_nokv", s.gen_tokens)
        mfu_cell = "n/a"
        if peak:
            mfu_cell = f"{100 * mfu(tr, model.flops_per_token(T), peak):.1f}%"
        rows.append(
            [
                v.name,
                model.attn_impl,
                amp_name(v.amp),
                str(v.threads) if v.device.type == "cpu" else "-",
                f"{model.num_params() / 1e6:.2f}M",
                f"{s.batch_size}x{T}",
                f"{tr:,.0f}",
                f"{inf:,.0f}",
                f"{kv:,.1f}",
                f"{nokv:,.1f}",
                f"{kv / nokv:.2f}x",
                f"{v.peak_mb:,.0f}",
                mfu_cell,
                f"{tr / b_train:.2f}x",
                f"{inf / b_infer:.2f}x",
                (
                    f"{v.last_loss:.4f}"
                    if math.isfinite(v.last_loss)
                    else f"{v.last_loss} (NOT FINITE)"
                ),
            ]
        )
    return rows, notes


def load_average() -> str:
    """The 1-minute load average, or n/a where the OS keeps none."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def device_description(device: torch.device) -> str:
    """A short name for the machine: GPU model, or CPU model with core and thread counts."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"CPU {cpu}, {os.cpu_count()} cores"


def bench_configs(
    config: str | None, overrides: Sequence[str], compares: Sequence[str], device: torch.device
) -> list[Variant]:
    """The base variant and one per --compare item (each a space-separated list of overrides)."""
    variants, default_threads = [], torch.get_num_threads()
    for name, extra in [("base", [])] + [(c, c.split()) for c in compares]:
        cfg = load_config(config, list(overrides) + extra)
        amp = runtime.pick_amp(cfg.train.amp, device)
        variants.append(Variant(name, cfg, device, amp, cfg.train.threads or default_threads))
    return variants


def append_report(path: Path, heading: str, command: str, body: str) -> None:
    """Append a section (heading, the command in a code block, the table) to a markdown file."""
    text = f"\n### {heading}\n\n```bash\n{command}\n```\n\n{body}\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


@cli
def main(argv: list[str] | None = None) -> int:
    """Benchmark a config (and variants of it) and print a markdown table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = ArgumentParser(prog="python -m llm_tiny.bench", description=__doc__.splitlines()[0])
    ap.add_argument(
        "overrides", nargs="*", metavar="[CONFIG] KEY=VALUE", help="config YAML, then overrides"
    )
    ap.add_argument("--config", default=None, help="config YAML (or give it first, positionally)")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variant with this override (repeatable; quote several as 'a=1 b=2')",
    )
    ap.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    ap.add_argument("--gen-tokens", type=int, default=None, help="default: min(128, block/2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s for MFU")
    ap.add_argument(
        "--tokenizer",
        nargs="?",
        const="",
        default=None,
        metavar="CORPUS",
        help="also run the tokenizer benchmark (llm_tiny.bench.tokenizer) on CORPUS (default: data/tiny.txt)",
    )
    ap.add_argument("--out", default=None, help="append the report to this markdown file")
    args = ap.parse_args(argv)
    if args.overrides and "=" not in args.overrides[0]:  # `bench configs/tiny.yaml k=v` like train
        if args.config is not None:
            raise UserError(f"two configs given: --config {args.config} and {args.overrides[0]}")
        args.config = args.overrides.pop(0)
    if args.warmup < 0 or args.repeats < 1:
        raise UserError("--warmup must be >= 0 and --repeats >= 1")
    corpus = Path(args.tokenizer) if args.tokenizer else None
    if corpus is not None and not corpus.exists():
        raise UserError(f"tokenizer corpus {corpus} not found")
    device = pick_device(args.device or load_config(args.config, args.overrides).train.device)
    compares = args.compare or (list(CUDA_COMPARES) if device.type == "cuda" else [])
    variants = bench_configs(args.config, args.overrides, compares, device)
    base = variants[0].cfg
    T = base.model.block_size
    prompt_len = max(1, min(16, T // 4))
    s = Settings(
        batch_size=base.train.batch_size if args.batch_size is None else args.batch_size,
        prompt_len=prompt_len,
        gen_tokens=(
            max(1, min(128, T - prompt_len)) if args.gen_tokens is None else args.gen_tokens
        ),
        warmup=args.warmup,
        repeats=args.repeats,
    )
    if s.batch_size < 1 or s.gen_tokens < 1:
        raise UserError("--batch-size and --gen-tokens must be >= 1")
    log = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
    log(f"{len(variants)} variant(s) on {device_description(device)}")
    load_before = load_average()
    measure(variants, s, log)
    load_note = (
        f"load average {load_before} before, {load_average()} after, on {os.cpu_count()} CPUs"
    )
    rows, notes = table_rows(variants, s, args.peak_tflops)
    notes.append(load_note)
    notes.append(
        "last loss: training loss of the last timed step, a check for inf/nan (dropout and "
        "numerics make it differ between variants)"
    )
    notes.append(
        f"median of {s.repeats} repeats after {s.warmup} warm-up; generation: batch 1, "
        f"{s.prompt_len}-token prompt, {s.gen_tokens} new tokens; ratios from interleaved repeats"
    )
    body = markdown_table(COLUMNS, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)
    if args.tokenizer is not None:
        log("tokenizer benchmark (llm_tiny.bench.tokenizer)")
        body += "\n\n" + (tok_bench.report(corpus) if corpus else tok_bench.report())
    print(body)
    if args.out:
        heading = (
            f"{date.today().isoformat()} · {device_description(device)} · torch {torch.__version__}"
        )
        command = "python -m llm_tiny.bench " + shlex.join(argv)
        append_report(Path(args.out), heading, command, body)
        log(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
